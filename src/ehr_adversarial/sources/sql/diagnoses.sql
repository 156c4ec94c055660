-- diagnoses: the ICD-9 diagnosis codes of every admission (DIAGNOSES_ICD), in billing order
-- (seq_num), with the code's category for patient x code matrices: the first 3 characters, or
-- the first 4 for E-codes (external causes, E800-E999), and the short title (D_ICD_DIAGNOSES).
-- Rows without a code (a handful in full MIMIC-III) are left out.
SELECT
    dx.subject_id,
    dx.hadm_id,
    dx.seq_num,
    dx.icd9_code,
    CASE
        WHEN SUBSTR(dx.icd9_code, 1, 1) = 'E' THEN SUBSTR(dx.icd9_code, 1, 4)
        ELSE SUBSTR(dx.icd9_code, 1, 3)
    END AS icd9_3digit,
    d.short_title
FROM mimiciii.diagnoses_icd AS dx
LEFT JOIN mimiciii.d_icd_diagnoses AS d ON d.icd9_code = dx.icd9_code
WHERE dx.icd9_code IS NOT NULL
ORDER BY dx.hadm_id, dx.seq_num, dx.icd9_code
