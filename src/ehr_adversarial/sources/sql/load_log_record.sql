-- load_log_record: record (or replace) the load of one table.
INSERT INTO ehr_adversarial.load_log (table_name, file_name, file_bytes, file_sha256, row_count, loaded_at)
VALUES (:table_name, :file_name, :file_bytes, :file_sha256, :row_count, CAST(:loaded_at AS TIMESTAMP))
ON CONFLICT (table_name) DO UPDATE SET
    file_name = EXCLUDED.file_name,
    file_bytes = EXCLUDED.file_bytes,
    file_sha256 = EXCLUDED.file_sha256,
    row_count = EXCLUDED.row_count,
    loaded_at = EXCLUDED.loaded_at
