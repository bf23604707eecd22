-- The database floor of POST /initiate (BENCHMARKS.md): the two statements the service runs per
-- initiate (the open-flows count and the state insert), driven by pgbench alone:
--   pgbench -h 127.0.0.1 -U postgres -n -c 10 -j 2 -T 5 -f bench/sql/initiate-floor.sql oam_bench
-- (10 clients: the service's pool). Delete the rows it leaves: DELETE FROM oauth_state;
\set u random(1, 1000)
INSERT INTO oauth_state (state_token, user_id, provider, scopes, redirect_uri, code_verifier, code_challenge, state_metadata, created_at, expires_at) VALUES (md5(random()::text) || md5(random()::text), :u, 'google', '{openid,email}', 'http://127.0.0.1:8000/api/v1/oauth/callback', 'x', 'y', '{"nonce":"abc"}', now(), now() + interval '10 minutes');
SELECT COUNT(*), MIN(expires_at) FROM oauth_state WHERE user_id = :u AND is_used = false AND expires_at > now();
