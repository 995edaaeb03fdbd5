"""Running the whole service on one machine: the ``clearcut dev`` supervisor and the embedded services
(SeaweedFS, Valkey, PostgreSQL) it and the tests start."""
