-- Issue #14: OAuth2 sign-in (Google, Microsoft 365, any provider with a token endpoint).
-- auth_method 'password': the oauth_* columns stay '' and NULL. 'oauth2': secret_ciphertext holds an
-- encrypted empty string (the mailbox has no password), and the worker fetches access tokens with the
-- refresh token, which it rewrites when the provider rotates it (under a row lock, see warmup/oauth_tokens.py).
ALTER TABLE mailboxes
    ADD COLUMN auth_method TEXT NOT NULL DEFAULT 'password' CHECK (auth_method IN ('password', 'oauth2')),
    ADD COLUMN oauth_provider TEXT NOT NULL DEFAULT '' CHECK (oauth_provider IN ('', 'google', 'microsoft', 'custom')),
    ADD COLUMN oauth_tenant TEXT NOT NULL DEFAULT '',
    ADD COLUMN oauth_client_id TEXT NOT NULL DEFAULT '',
    ADD COLUMN oauth_token_url TEXT NOT NULL DEFAULT '',
    ADD COLUMN oauth_scopes TEXT NOT NULL DEFAULT '',
    ADD COLUMN oauth_client_secret_ciphertext TEXT,
    ADD COLUMN oauth_refresh_token_ciphertext TEXT,
    -- When the stored refresh token last changed (enroll, `starter authorize`, a rotation by the provider).
    ADD COLUMN oauth_refresh_token_at TIMESTAMPTZ,
    ADD CONSTRAINT oauth_needs_a_refresh_token
        CHECK (auth_method = 'password' OR oauth_refresh_token_ciphertext IS NOT NULL);
