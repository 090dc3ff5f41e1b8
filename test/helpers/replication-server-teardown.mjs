export default async function replicationGlobalTeardown() {
  await globalThis.__jobwireReplicationTeardown?.()
}
