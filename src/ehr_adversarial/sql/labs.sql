-- labs: LABEVENTS rows of the paper's 13 labs measured in the window [intime, window_end) of
-- the cohort's stays, one row per result (long format). LABEVENTS has no icustay_id, so a
-- result belongs to a stay when it is the same patient (subject_id) and its charttime falls in
-- the window; included stays last the whole window, so the windows of one patient's stays
-- never overlap. reject_reason and the raw columns (rejected rows only) as in vitals.sql.
--
-- Temporary tables: cohort_stays and feature_items (see vitals.sql). The valid ranges are
-- mimic-code's pivoted_lab checks: valuenum > 0 and at most its upper bound.
WITH measured AS (
    SELECT
        s.icustay_id AS record_id,
        CAST(FLOOR(
            CAST(EXTRACT(EPOCH FROM le.charttime) - EXTRACT(EPOCH FROM s.intime) AS DOUBLE PRECISION) / 60
        ) AS INTEGER) AS minutes,
        f.parameter,
        le.valuenum AS value,
        le.row_id,
        le.itemid,
        le.charttime,
        le.value AS value_text,
        le.valueuom,
        CASE
            WHEN le.valuenum IS NULL THEN 'not_numeric'
            WHEN (f.above IS NOT NULL AND NOT le.valuenum > f.above)
              OR (f.below IS NOT NULL AND NOT le.valuenum < f.below)
              OR (f.at_most IS NOT NULL AND NOT le.valuenum <= f.at_most) THEN 'out_of_range'
        END AS reject_reason
    FROM cohort_stays AS s
    INNER JOIN mimiciii.labevents AS le ON le.subject_id = s.subject_id
    INNER JOIN feature_items AS f ON f.itemid = le.itemid AND f.source_table = 'labevents'
    WHERE le.charttime >= s.intime
      AND le.charttime < s.window_end
)
SELECT
    record_id,
    minutes,
    parameter,
    value,
    row_id,
    CASE WHEN reject_reason IS NOT NULL THEN 'labevents' END AS source_table,
    CASE WHEN reject_reason IS NOT NULL THEN itemid END AS itemid,
    CASE WHEN reject_reason IS NOT NULL THEN charttime END AS charttime,
    CASE WHEN reject_reason IS NOT NULL THEN value_text END AS value_text,
    CASE WHEN reject_reason IS NOT NULL THEN value END AS valuenum,
    CASE WHEN reject_reason IS NOT NULL THEN valueuom END AS valueuom,
    reject_reason
FROM measured
ORDER BY record_id, minutes, parameter, row_id
