-- Initial schema. Written in the SQL subset shared by SQLite and PostgreSQL so one migration
-- list serves both. Ids are canonical lower-case UUID strings; times are Unix seconds
-- (BIGINT when whole, DOUBLE PRECISION when fractional); free-form JSON is stored as TEXT.
CREATE TABLE clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE identities (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES clients (id),
    username TEXT NOT NULL,
    name TEXT,
    email TEXT,
    identity_provider TEXT NOT NULL,
    identity_provider_display_name TEXT NOT NULL,
    organization TEXT,
    is_primary BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX identities_client ON identities (client_id);

CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES clients (id),
    resource_server TEXT NOT NULL,
    scope TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE functions (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    name TEXT NOT NULL,
    code TEXT NOT NULL,
    description TEXT,
    python_version TEXT,
    sdk_version TEXT,
    public BIGINT NOT NULL,
    deleted BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE endpoints (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    name TEXT NOT NULL,
    display_name TEXT NOT NULL,
    multi_user BIGINT NOT NULL,
    public BIGINT NOT NULL,
    high_assurance BIGINT NOT NULL,
    metadata TEXT NOT NULL,
    allowed_functions TEXT,
    locked_until BIGINT,
    last_heartbeat DOUBLE PRECISION,
    heartbeat_period DOUBLE PRECISION,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE user_endpoints (
    id TEXT PRIMARY KEY,
    mep_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    user_opts TEXT NOT NULL,
    user_runtime TEXT NOT NULL,
    start_sent_at DOUBLE PRECISION,
    last_heartbeat DOUBLE PRECISION,
    heartbeat_period DOUBLE PRECISION,
    active BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    error_at DOUBLE PRECISION,
    created_at BIGINT NOT NULL
);

CREATE TABLE task_groups (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    create_queue BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    task_group_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    function_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    uep_id TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT,
    exception TEXT,
    details TEXT,
    completion_t DOUBLE PRECISION,
    forwarded BIGINT NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX tasks_task_group ON tasks (task_group_id);
CREATE INDEX tasks_uep_status ON tasks (uep_id, status);
