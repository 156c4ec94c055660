"""Data sources: PhysioNet/CinC Challenge 2012 files and MIMIC-III tables, read into the ingestion
contract (a long `timeseries` table and a `static` table per source, same columns for every source).

- `physionet2012`: find or download the challenge files (checksum-verified), parse record files and
  outcomes, classify every row (kept, descriptor, or rejected with a reason).
- `mimic3`: load the CSV tables into a database, then cohort, measurements and diagnoses in SQL.
- `database`: the two database engines (embedded DuckDB, PostgreSQL through psycopg2).
- `sql/`: one `.sql` file per concept, the same on both engines.
- `download`, `checksums`: resumable HTTPS downloads and sha256 verification.
"""
