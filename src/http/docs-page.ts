// The /docs page (development): the OpenAPI document rendered on the server as one static
// HTML page. No script and no CDN: it works offline and under the app's CSP (script-src
// 'self'). Every text from the document is HTML-escaped.

interface OperationLike {
  summary?: string
  description?: string
  parameters?: Array<{ name: string; in: string; required?: boolean; schema?: unknown }>
  requestBody?: { content?: Record<string, unknown> }
  responses?: Record<string, { description?: string; content?: Record<string, unknown> }>
  security?: Array<Record<string, unknown>>
}

interface DocumentLike {
  info: { title: string; version: string; description?: string }
  paths?: Record<string, unknown>
}

const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const

export function renderDocsPage(doc: DocumentLike): string {
  const sections: string[] = []
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const method of METHODS) {
      const op = (item as Partial<Record<string, OperationLike>> | undefined)?.[method]
      if (!op) continue
      const params = (op.parameters ?? [])
        .map(
          (p) =>
            `<li><code>${escape(p.name)}</code> <small>${escape(p.in)}${p.required ? ', required' : ''}</small> <code>${escape(JSON.stringify(p.schema ?? {}))}</code></li>`,
        )
        .join('')
      const body = Object.entries(op.requestBody?.content ?? {})
        .map(
          ([type, media]) =>
            `<p>Body (${escape(type)}): <code>${escape(JSON.stringify((media as { schema?: unknown }).schema ?? {}))}</code></p>`,
        )
        .join('')
      const responses = Object.entries(op.responses ?? {})
        .map(
          ([status, r]) =>
            `<li><b>${escape(status)}</b> ${escape(r.description ?? '')}${r.content ? ` <small>(${Object.keys(r.content).map(escape).join(', ')})</small>` : ''}</li>`,
        )
        .join('')
      sections.push(`<section id="${escape(`${method}-${path}`)}">
<h2><span class="m ${method}">${method.toUpperCase()}</span> <code>${escape(path)}</code></h2>
${op.summary ? `<p><b>${escape(op.summary)}</b></p>` : ''}
${op.description ? `<div class="d">${escape(op.description)}</div>` : ''}
${params ? `<h3>Parameters</h3><ul>${params}</ul>` : ''}${body}
<h3>Responses</h3><ul>${responses}</ul>
</section>`)
    }
  }
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(doc.info.title)} API</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222 }
section { border-top: 1px solid #ddd; padding: .5rem 0 }
h2 { font-size: 1.1rem } h3 { font-size: .95rem; margin-bottom: .2rem }
.d { white-space: pre-wrap } code { background: #f4f4f4; padding: 0 .2rem }
.m { display: inline-block; min-width: 4rem; color: #fff; border-radius: 3px; text-align: center; font-size: .85rem }
.get { background: #2b7bb9 } .post { background: #3a9a4a } .put, .patch { background: #b98a2b } .delete { background: #b92b2b }
</style>
</head>
<body>
<h1>${escape(doc.info.title)} <small>API v${escape(doc.info.version)}</small></h1>
<p>${escape(doc.info.description ?? '')} The machine-readable document: <a href="/openapi.json">/openapi.json</a>.</p>
${sections.join('\n')}
</body>
</html>
`
}

function escape(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;')
}
