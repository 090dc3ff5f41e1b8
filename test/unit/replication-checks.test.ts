// What EVENT_SOURCE=replication needs from the server: every missing piece is named with the
// setting to change.
import {
  PUBLICATION,
  replicationProblems,
  type ReplicationReadiness,
} from '../../src/db/replication-checks.js'

const ready: ReplicationReadiness = {
  login: 'jobwire',
  wal_level: 'logical',
  max_replication_slots: 10,
  slots_in_use: 2,
  max_wal_senders: 10,
  senders_in_use: 2,
  can_replicate: true,
  has_publication: true,
}

describe('replicationProblems', () => {
  it('finds nothing on a ready server', () => {
    expect(replicationProblems(ready, PUBLICATION)).toEqual([])
  })

  it('names each missing setting and what to change', () => {
    const problems = replicationProblems(
      {
        ...ready,
        wal_level: 'replica',
        slots_in_use: 10,
        senders_in_use: 10,
        can_replicate: false,
        has_publication: false,
      },
      PUBLICATION,
    )
    expect(problems).toHaveLength(5)
    expect(problems[0]).toMatch(/wal_level is replica, it must be logical: ALTER SYSTEM SET/)
    expect(problems[1]).toMatch(/max_replication_slots = 10, 10 in use/)
    expect(problems[2]).toMatch(/max_wal_senders = 10, 10 in use/)
    expect(problems[3]).toMatch(/ALTER ROLE jobwire REPLICATION/)
    expect(problems[4]).toMatch(/publication jobwire_job_queue is missing/)
  })
})
