-- Authentication policies (Globus Auth `/v2/api/policies` emulation), the policy and
-- subscription an endpoint registered with, and when the holder of a token authenticated.
-- Domain lists are JSON arrays stored as TEXT (NULL = no constraint).
CREATE TABLE auth_policies (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    description TEXT NOT NULL,
    high_assurance BIGINT NOT NULL,
    authentication_assurance_timeout BIGINT,
    required_mfa BIGINT NOT NULL,
    domain_constraints_include TEXT,
    domain_constraints_exclude TEXT,
    created_at BIGINT NOT NULL
);

ALTER TABLE endpoints ADD COLUMN authentication_policy TEXT;
ALTER TABLE endpoints ADD COLUMN subscription_id TEXT;

-- Unix seconds of the authentication that produced the token (client credentials: the grant).
-- NULL for tokens issued before this migration: they satisfy no assurance timeout.
ALTER TABLE tokens ADD COLUMN authenticated_at BIGINT;
