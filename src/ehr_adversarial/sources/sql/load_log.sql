-- load_log: which CSV file filled which mimiciii table, with how many rows, so a re-run skips
-- tables whose file is unchanged and whose row count still matches. Kept in its own schema so
-- an existing mimic-code database's schema mimiciii gets no foreign table.
CREATE SCHEMA IF NOT EXISTS ehr_adversarial;
CREATE TABLE IF NOT EXISTS ehr_adversarial.load_log (
    table_name VARCHAR(64) PRIMARY KEY,
    file_name VARCHAR(255) NOT NULL,
    file_bytes BIGINT NOT NULL,
    file_sha256 VARCHAR(64) NOT NULL,
    row_count BIGINT NOT NULL,
    loaded_at TIMESTAMP NOT NULL
)
