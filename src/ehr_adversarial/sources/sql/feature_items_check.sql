-- feature_items_check: each configured itemid of the 19 features next to what the
-- dictionaries say it is: D_ITEMS (label, linksto) for CHARTEVENTS items, D_LABITEMS
-- (label, fluid) for LABEVENTS items. The pipeline fails when an item is unknown, is not
-- charted where it is read from, or its label differs from the expected one (as mimic-code's
-- pivoted_vital documents its itemids by D_ITEMS label). The specimen item of a feature that
-- has one (PaCO2: 50800 Specimen Type) is looked up in D_LABITEMS too.
-- Temporary table: feature_items (see measurements.sql), with expected_label and specimen_label.
SELECT
    f.parameter,
    f.source_table,
    f.itemid,
    f.expected_label,
    COALESCE(di.label, dl.label) AS found_label,
    COALESCE(di.linksto, CASE WHEN dl.itemid IS NOT NULL THEN 'labevents' END) AS found_linksto,
    COALESCE(di.dbsource, dl.fluid) AS found_source,
    f.specimen_itemid,
    ds.label AS found_specimen_label
FROM feature_items AS f
LEFT JOIN mimiciii.d_items AS di ON f.source_table = 'chartevents' AND di.itemid = f.itemid
LEFT JOIN mimiciii.d_labitems AS dl ON f.source_table = 'labevents' AND dl.itemid = f.itemid
LEFT JOIN mimiciii.d_labitems AS ds ON ds.itemid = f.specimen_itemid
ORDER BY f.parameter, f.itemid
