-- vitals: CHARTEVENTS rows of the paper's vital signs (HR, SysBP, DiasBP, Temp, RespRate,
-- SpO2) charted in the window [intime, window_end) of the cohort's stays, one row per charted
-- value (long format). Every row comes back; reject_reason says why a row is not usable
-- (NULL = kept), so the pipeline can count and keep the rejected rows. The raw columns
-- (itemid, charttime, value text, unit) are filled for rejected rows only: kept rows are the
-- bulk (millions on full MIMIC-III) and need only record_id, minutes, parameter and value.
--
-- Temporary tables the caller fills (same on both engines):
--   cohort_stays(icustay_id, subject_id, intime, window_end)       included stays
--   feature_items(parameter, source_table, itemid, fahrenheit,      itemids, their feature and
--                 above, below, at_most)                           valid range in the item's unit
-- A value is valid when valuenum > above, valuenum < below and valuenum <= at_most (each bound
-- optional), the bounds of mimic-code's pivoted_vital. Fahrenheit items are range-checked in
-- °F and converted to °C.
WITH charted AS (
    SELECT
        s.icustay_id AS record_id,
        CAST(FLOOR(
            CAST(EXTRACT(EPOCH FROM ce.charttime) - EXTRACT(EPOCH FROM s.intime) AS DOUBLE PRECISION) / 60
        ) AS INTEGER) AS minutes,
        f.parameter,
        CASE
            WHEN f.fahrenheit THEN (ce.valuenum - CAST(32 AS DOUBLE PRECISION)) / CAST(1.8 AS DOUBLE PRECISION)
            ELSE ce.valuenum
        END AS value,
        ce.row_id,
        ce.itemid,
        ce.charttime,
        ce.value AS value_text,
        ce.valuenum,
        ce.valueuom,
        CASE
            WHEN ce.error = 1 THEN 'error_flag'
            WHEN ce.valuenum IS NULL THEN 'not_numeric'
            WHEN (f.above IS NOT NULL AND NOT ce.valuenum > f.above)
              OR (f.below IS NOT NULL AND NOT ce.valuenum < f.below)
              OR (f.at_most IS NOT NULL AND NOT ce.valuenum <= f.at_most) THEN 'out_of_range'
        END AS reject_reason
    FROM cohort_stays AS s
    INNER JOIN mimiciii.chartevents AS ce ON ce.icustay_id = s.icustay_id
    INNER JOIN feature_items AS f ON f.itemid = ce.itemid AND f.source_table = 'chartevents'
    WHERE ce.charttime >= s.intime
      AND ce.charttime < s.window_end
)
SELECT
    record_id,
    minutes,
    parameter,
    value,
    row_id,
    CASE WHEN reject_reason IS NOT NULL THEN 'chartevents' END AS source_table,
    CASE WHEN reject_reason IS NOT NULL THEN itemid END AS itemid,
    CASE WHEN reject_reason IS NOT NULL THEN charttime END AS charttime,
    CASE WHEN reject_reason IS NOT NULL THEN value_text END AS value_text,
    CASE WHEN reject_reason IS NOT NULL THEN valuenum END AS valuenum,
    CASE WHEN reject_reason IS NOT NULL THEN valueuom END AS valueuom,
    reject_reason
FROM charted
ORDER BY record_id, minutes, parameter, row_id
