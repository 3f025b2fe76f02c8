"""What third parties reuse to test against zoostore: the backend conformance suite
(`zoostore.testing.conformance`), a one-node radosgw S3 server (`radosgw`) and a
fault-injecting HTTP proxy (`faultproxy`). Imported only by tests; never by zoostore itself."""
