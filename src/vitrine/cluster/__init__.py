"""Several Vitrine processes on one database: the leader election and the change feed."""
