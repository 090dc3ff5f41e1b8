// Suites that need a tool the machine may lack (pgbouncer, Chromium, Redis, python3-psycopg).
// Every conditional skip goes through here, so a run always says what it did not test:
//   * the tool is there: plain `describe` / `it`;
//   * it is missing: the suite is skipped and one warning names the file and the reason;
//   * it is missing under CI=true: each would-be-skipped suite or test fails instead, with
//     the reason, because CI is where everything must run (.ci/run installs the tools).

/** `describe` and `it` for a suite that needs `tool`; `missing` is why it is not there. */
export function requiresTool(
  tool: string,
  missing: string | undefined,
  file: string,
): { describe: jest.Describe; it: jest.It } {
  if (missing === undefined) return { describe, it }
  const where = file.slice(file.lastIndexOf('/test/') + 1)
  if (process.env.CI === 'true') {
    const fail = () => {
      throw new Error(`${where} needs ${tool}, and CI=true runs every suite: ${missing}`)
    }
    const failingIt = ((name: string) => it(name, fail)) as unknown as jest.It
    const failingDescribe = ((name: string) =>
      describe(name, () => it(`needs ${tool}`, fail))) as unknown as jest.Describe
    return { describe: failingDescribe, it: failingIt }
  }
  console.warn(`skipped: ${where} needs ${tool}: ${missing}`)
  return { describe: describe.skip, it: it.skip }
}
