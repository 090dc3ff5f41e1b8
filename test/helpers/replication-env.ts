// setupFiles of the integration-replication project: its test files clone databases on the
// logical server of test/helpers/replication-server.mjs and start the service with
// EVENT_SOURCE=replication (startTestService reads JOBWIRE_TEST_EVENT_SOURCE).
process.env.JOBWIRE_TEST_SERVER_URL = process.env.JOBWIRE_TEST_REPLICATION_SERVER_URL
process.env.JOBWIRE_TEST_TEMPLATE = process.env.JOBWIRE_TEST_REPLICATION_TEMPLATE
process.env.JOBWIRE_TEST_EVENT_SOURCE = 'replication'
