-- labs: LABEVENTS rows of the paper's 13 labs measured in the first :window_hours after ICU
-- intime of the cohort's stays, one row per result (long format). LABEVENTS has no
-- icustay_id, so a result belongs to a stay when it is the same patient (subject_id) and its
-- charttime falls in [intime, window_end); included stays last the whole window, so the
-- windows of one patient's stays never overlap. reject_reason as in vitals.sql.
--
-- Temporary tables: cohort_stays and feature_items (see vitals.sql). The valid ranges are
-- mimic-code's pivoted_lab checks: valuenum > 0 and at most its upper bound.
SELECT
    s.icustay_id AS record_id,
    CAST(FLOOR(
        CAST(EXTRACT(EPOCH FROM le.charttime) - EXTRACT(EPOCH FROM s.intime) AS DOUBLE PRECISION) / 60
    ) AS INTEGER) AS minutes,
    f.parameter,
    le.valuenum AS value,
    'labevents' AS source_table,
    le.row_id,
    le.itemid,
    le.charttime,
    le.value AS value_text,
    le.valuenum,
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
ORDER BY record_id, minutes, parameter, le.row_id
