-- cohort: every ICU stay (ICUSTAYS) with its admission (ADMISSIONS) and patient (PATIENTS),
-- the icustay-detail facts the cohort is built on, and one boolean column per inclusion
-- filter. Nothing is dropped here, so the ingestion summary can say which filter removed
-- which stays; the pipeline keeps the stays where every passes_* column is true.
--
-- Parameters:
--   :min_age_years          adults only: age at ICU intime (after the cap below) >= this (18)
--   :age_cap_above          MIMIC-III shifts the DOB of patients older than 89 so that they
--   :age_cap_value          appear ~300 years old; ages above :age_cap_above become :age_cap_value (91.4)
--   :min_hospital_los_days  (dischtime - admittime) >= this, in days (1)
--   :min_icu_los_days       (outtime - intime) >= this, in days (1)
--   :window_hours           the observation window after intime (48); a stay passes the
--                           full-window filter when it lasts the whole window
--   :window_rule            'padded' (Sun et al. 2018): the window ends at intime + :window_hours,
--                           or earlier at ICU outtime or at the patient's next ICU intime, so that
--                           no measurement after the stay (or of the next stay) falls inside it;
--                           passes_full_window is not a filter. 'full_window': the window is
--                           intime + :window_hours and the stay must last all of it
--   :stay_definition        'icustay': every ICU stay is a sample;
--                           'first_icustay': only the first ICU stay of each admission
--
-- Durations come from epoch seconds cast to DOUBLE PRECISION, so DuckDB and PostgreSQL compute
-- bit-identical values (PostgreSQL's EXTRACT returns NUMERIC, DuckDB's DOUBLE).
WITH stays AS (
    SELECT
        ie.icustay_id,
        ie.subject_id,
        ie.hadm_id,
        ie.dbsource,
        ie.first_careunit,
        ie.intime,
        ie.outtime,
        adm.admittime,
        adm.dischtime,
        adm.hospital_expire_flag,
        pat.gender,
        pat.dob,
        CAST(EXTRACT(EPOCH FROM ie.intime) - EXTRACT(EPOCH FROM pat.dob) AS DOUBLE PRECISION)
            / CAST(365.242 * 86400 AS DOUBLE PRECISION) AS age_at_intime_years,
        CAST(EXTRACT(EPOCH FROM adm.dischtime) - EXTRACT(EPOCH FROM adm.admittime) AS DOUBLE PRECISION)
            / CAST(86400 AS DOUBLE PRECISION) AS hospital_los_days,
        CAST(EXTRACT(EPOCH FROM ie.outtime) - EXTRACT(EPOCH FROM ie.intime) AS DOUBLE PRECISION)
            / CAST(3600 AS DOUBLE PRECISION) AS icu_los_hours,
        ROW_NUMBER() OVER (PARTITION BY ie.hadm_id ORDER BY ie.intime, ie.icustay_id) AS icustay_seq,
        -- The patient's next ICU stay (any admission), where the padded window must end at the latest.
        LEAD(ie.intime) OVER (PARTITION BY ie.subject_id ORDER BY ie.intime, ie.icustay_id) AS next_intime
    FROM mimiciii.icustays AS ie
    INNER JOIN mimiciii.admissions AS adm ON adm.hadm_id = ie.hadm_id
    INNER JOIN mimiciii.patients AS pat ON pat.subject_id = ie.subject_id
),
aged AS (
    SELECT
        stays.*,
        CASE
            WHEN age_at_intime_years > CAST(:age_cap_above AS DOUBLE PRECISION)
                THEN CAST(:age_cap_value AS DOUBLE PRECISION)
            ELSE age_at_intime_years
        END AS age_years,
        intime + CAST(:window_hours AS INTEGER) * INTERVAL '1 hour' AS full_window_end
    FROM stays
),
windowed AS (
    SELECT
        aged.*,
        -- No outtime or no later stay: that bound does not apply (explicit, not left to LEAST's NULL rules).
        CASE
            WHEN CAST(:window_rule AS VARCHAR) = 'full_window' THEN full_window_end
            ELSE LEAST(full_window_end, COALESCE(outtime, full_window_end), COALESCE(next_intime, full_window_end))
        END AS window_end
    FROM aged
)
SELECT
    icustay_id,
    subject_id,
    hadm_id,
    icustay_seq,
    dbsource,
    first_careunit,
    gender,
    dob,
    admittime,
    dischtime,
    intime,
    outtime,
    window_end,
    CAST(EXTRACT(EPOCH FROM window_end) - EXTRACT(EPOCH FROM intime) AS DOUBLE PRECISION)
        / CAST(3600 AS DOUBLE PRECISION) AS window_hours_in_stay,
    age_at_intime_years AS age_raw_years,
    age_years,
    hospital_los_days,
    icu_los_hours,
    icu_los_hours / CAST(24 AS DOUBLE PRECISION) AS icu_los_days,
    hospital_expire_flag,
    COALESCE(age_years >= CAST(:min_age_years AS DOUBLE PRECISION), FALSE) AS passes_min_age,
    COALESCE(hospital_los_days >= CAST(:min_hospital_los_days AS DOUBLE PRECISION), FALSE) AS passes_min_hospital_los,
    COALESCE(icu_los_hours >= CAST(:min_icu_los_days AS DOUBLE PRECISION) * 24, FALSE) AS passes_min_icu_los,
    COALESCE(icu_los_hours >= CAST(:window_hours AS DOUBLE PRECISION), FALSE) AS passes_full_window,
    (CAST(:stay_definition AS VARCHAR) = 'icustay' OR icustay_seq = 1) AS passes_stay_definition
FROM windowed
ORDER BY icustay_id
