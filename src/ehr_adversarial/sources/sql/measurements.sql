-- measurements: the paper's 19 features in the window [intime, window_end) of the cohort's
-- stays, one row per charted or measured value (long format):
--   vitals (HR, SysBP, DiasBP, Temp, RespRate, SpO2) from CHARTEVENTS, joined on icustay_id
--     (rows without one are not used, as in mimic-code);
--   labs (the other 13) from LABEVENTS, which has no icustay_id: a result belongs to a stay
--     when it is the same patient (subject_id) and its charttime falls in the window.
-- window_end (cohort.sql) is never after the stay's outtime nor after the patient's next ICU
-- intime under the padded window rule, so the windows of one patient's stays never overlap
-- and a lab result belongs to one stay at most. Under the full-window rule included stays
-- last the whole window, which holds the same as long as ICU stays do not overlap.
-- Every row comes back; reject_reason says why a row is not usable (NULL = kept). The raw
-- columns (source table, itemid, charttime, value text, unit) are filled for rejected rows
-- only: kept rows are the bulk (millions on full MIMIC-III) and need none of them.
--
-- Temporary tables the caller fills (same on both engines):
--   cohort_stays(icustay_id, subject_id, intime, window_end)       included stays
--   feature_items(parameter, source_table, itemid, fahrenheit,      itemids, their feature and
--                 above, below, at_most,                           valid range in the item's unit,
--                 specimen_itemid, specimen)                       and the specimen they need
-- A value is valid when valuenum > above, valuenum < below and valuenum <= at_most (each bound
-- optional): mimic-code's pivoted_vital / pivoted_lab bounds, from the parameters.
-- Fahrenheit items are range-checked in °F and converted to °C.
-- Specimen: a LABEVENTS item with a specimen (PaCO2: ART) is kept only when the patient's
-- specimen rows (itemid specimen_itemid, 50800 Specimen Type) at the same charttime all say
-- that specimen, as mimic-code's blood-gas concepts pair them (one blood-gas sample = one
-- subject and charttime). No specimen row, or rows that disagree (ART and MIX at one time),
-- rejects it as wrong_specimen.
WITH specimens AS (
    SELECT
        sp.subject_id, sp.charttime, sp.itemid,
        MIN(sp.value) AS specimen_min,
        MAX(sp.value) AS specimen_max
    FROM mimiciii.labevents AS sp
    WHERE sp.itemid IN (SELECT specimen_itemid FROM feature_items WHERE specimen_itemid IS NOT NULL)
      AND sp.subject_id IN (SELECT subject_id FROM cohort_stays)
    GROUP BY sp.subject_id, sp.charttime, sp.itemid
),
in_window AS (
    SELECT
        s.icustay_id, s.subject_id, s.intime, 'chartevents' AS source_table,
        ce.row_id, ce.itemid, ce.charttime, ce.value, ce.valuenum, ce.valueuom, ce.error
    FROM cohort_stays AS s
    INNER JOIN mimiciii.chartevents AS ce ON ce.icustay_id = s.icustay_id
    WHERE ce.itemid IN (SELECT itemid FROM feature_items WHERE source_table = 'chartevents')
      AND ce.charttime >= s.intime
      AND ce.charttime < s.window_end
    UNION ALL
    SELECT
        s.icustay_id, s.subject_id, s.intime, 'labevents' AS source_table,
        le.row_id, le.itemid, le.charttime, le.value, le.valuenum, le.valueuom, CAST(NULL AS INTEGER) AS error
    FROM cohort_stays AS s
    INNER JOIN mimiciii.labevents AS le ON le.subject_id = s.subject_id
    WHERE le.itemid IN (SELECT itemid FROM feature_items WHERE source_table = 'labevents')
      AND le.charttime >= s.intime
      AND le.charttime < s.window_end
),
checked AS (
    SELECT
        w.*,
        f.parameter,
        f.fahrenheit,
        CASE
            WHEN w.error = 1 THEN 'error_flag'
            WHEN f.specimen IS NOT NULL
             AND NOT COALESCE(sp.specimen_min = f.specimen AND sp.specimen_max = f.specimen, FALSE)
                THEN 'wrong_specimen'
            WHEN w.valuenum IS NULL THEN 'not_numeric'
            WHEN (f.above IS NOT NULL AND NOT w.valuenum > f.above)
              OR (f.below IS NOT NULL AND NOT w.valuenum < f.below)
              OR (f.at_most IS NOT NULL AND NOT w.valuenum <= f.at_most) THEN 'out_of_range'
        END AS reject_reason
    FROM in_window AS w
    INNER JOIN feature_items AS f ON f.itemid = w.itemid AND f.source_table = w.source_table
    LEFT JOIN specimens AS sp
        ON w.source_table = 'labevents'
       AND sp.subject_id = w.subject_id
       AND sp.charttime = w.charttime
       AND sp.itemid = f.specimen_itemid
)
SELECT
    icustay_id AS record_id,
    CAST(FLOOR(
        CAST(EXTRACT(EPOCH FROM charttime) - EXTRACT(EPOCH FROM intime) AS DOUBLE PRECISION) / 60
    ) AS INTEGER) AS minutes,
    parameter,
    CASE
        WHEN fahrenheit THEN (valuenum - CAST(32 AS DOUBLE PRECISION)) / CAST(1.8 AS DOUBLE PRECISION)
        ELSE valuenum
    END AS value,
    row_id,
    CASE WHEN reject_reason IS NOT NULL THEN source_table END AS source_table,
    CASE WHEN reject_reason IS NOT NULL THEN itemid END AS itemid,
    CASE WHEN reject_reason IS NOT NULL THEN charttime END AS charttime,
    CASE WHEN reject_reason IS NOT NULL THEN value END AS value_text,
    CASE WHEN reject_reason IS NOT NULL THEN valuenum END AS valuenum,
    CASE WHEN reject_reason IS NOT NULL THEN valueuom END AS valueuom,
    reject_reason
FROM checked
-- Vitals and labs never share a parameter, so this is a total order.
ORDER BY record_id, minutes, parameter, row_id
