-- load_log_entry: what the load log says about one table (no row: never loaded by us).
SELECT file_name, file_bytes, file_sha256, row_count, loaded_at
FROM ehr_adversarial.load_log
WHERE table_name = :table_name
