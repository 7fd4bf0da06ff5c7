-- Which host holds an endpoint's connection: the host name and per-process start token its
-- last accepted registration reported, and when. A registration from another host is refused
-- while this holder is alive (registration or heartbeats recent enough), unless it asks to
-- take over.
ALTER TABLE endpoints ADD COLUMN holder_host TEXT;
ALTER TABLE endpoints ADD COLUMN holder_token TEXT;
ALTER TABLE endpoints ADD COLUMN holder_since DOUBLE PRECISION;
