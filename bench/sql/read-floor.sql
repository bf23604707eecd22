-- The database floor of the baseline read (BENCHMARKS.md), to compare with initiate-floor.sql:
--   pgbench -h 127.0.0.1 -U postgres -n -c 10 -j 2 -T 5 -f bench/sql/read-floor.sql oam_bench
\set id random(1, 200000)
SELECT access_token, token_type, expires_at FROM oauth_tokens WHERE id = :id;
