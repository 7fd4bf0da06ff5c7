-- A function registered for a high-assurance endpoint (`ha_endpoint_id`) runs there only and
-- is shown only to callers satisfying that endpoint's authentication policy.
ALTER TABLE functions ADD COLUMN ha_endpoint_id TEXT;
