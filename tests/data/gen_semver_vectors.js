// Golden vectors for zoostore/semver.py, computed by npm's node-semver (the reference).
//
// Regenerate (needs node and network once; the tests themselves need neither):
//   mkdir -p /tmp/semverref && cd /tmp/semverref && npm install semver@7.8.6
//   NODE_PATH=/tmp/semverref/node_modules node tests/data/gen_semver_vectors.js \
//       > tests/data/semver_vectors.json
//
// Output: {"versions": [...], "valid": [...], "rank": [...], "ranges": [...]}.
//   versions  the version strings every range is tested against (some deliberately invalid)
//   valid     semver.valid(v): the normalised version, or null when node rejects it
//   rank      for valid versions, how many pool versions have lower precedence (semver.compare)
//   ranges    one object per range:
//     r   the range text as zoostore reads it (may use "," for AND)
//     ok  whether node-semver accepts it (commas replaced by spaces first: node has no comma)
//     d   new Range(r).range, node's desugared comparators      (only when ok)
//     m   satisfies(versions[i], r) for every i, as a hex bitmask, bit i = digit i>>2, bit i&3
//     x   index of maxSatisfying(versions, r), or -1             (only when ok)
//     s   [indices, index of maxSatisfying(those versions), or -1]  (only when ok)
'use strict'

const semver = require('semver')

// mulberry32: a small seeded PRNG so that the file is reproducible.
// SEMVER_SEED / SEMVER_RANGES override the defaults for a larger throwaway fuzz run.
let seed = Number(process.env.SEMVER_SEED || 20260522)
const RANGE_COUNT = Number(process.env.SEMVER_RANGES || 2300)
const rand = () => {
  seed |= 0
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const pick = (xs) => xs[Math.floor(rand() * xs.length)]
const chance = (p) => rand() < p

const PRE = ['0', '1', 'alpha', 'alpha.1', 'alpha.beta', 'beta', 'beta.2', 'beta.11', 'rc.1', 'x.7.z.92', '0.3.7', 'a-b']

// The version pool.
const versions = []
for (let M = 0; M <= 3; M++) {
  for (let m = 0; m <= 3; m++) {
    for (let p = 0; p <= 3; p++) versions.push(`${M}.${m}.${p}`)
  }
}
for (const base of ['0.0.0', '0.0.1', '0.1.0', '0.2.3', '1.0.0', '1.2.0', '1.2.3', '1.3.0', '2.0.0', '3.0.0']) {
  const tags = PRE.slice().sort(() => rand() - 0.5).slice(0, 3)
  for (const tag of tags) versions.push(`${base}-${tag}`)
}
versions.push(
  // equal precedence, different spelling or build: maxSatisfying keeps the first
  'v1.2.3', '1.2.3+build.1', '1.2.3+20220504', '1.2.3-beta+exp.sha.5114f85', 'v2.0.0-rc.1', ' 1.2.4 ',
  '4.0.0', '10.20.30', '1.2.3-20220504',
  // not versions: satisfies() is false for all of them
  '1.2', '01.2.3', 'latest', '1.2.3.4', '', 'x', '1.2.3-', '1.2.3-01', 'V1.2.3', '1.2.3+', '1.2.3 - 2'
)

// Range generation.
const num = () => String(Math.floor(rand() * 4))
const wild = () => pick(['x', 'X', '*'])
const partial = () => {
  const parts = chance(0.6) ? 3 : chance(0.5) ? 2 : 1
  const comps = []
  for (let i = 0; i < parts; i++) comps.push(chance(0.12) ? wild() : num())
  let text = comps.join('.')
  if (parts === 3 && chance(0.25)) text += '-' + pick(PRE)
  if (parts === 3 && chance(0.04)) text += '+build.' + num()
  if (chance(0.05)) text = 'v' + text
  else if (chance(0.02)) text = '=' + text
  return text
}
const GARBAGE = [
  'latest', 'bleedingedge', '1.2.3.4', '01.2', '>>1', '~', '^', '=', 'x.1', '1.x.3', '1.2-beta', '-', '|',
  'v', '>=', '1.2.3-', '1.2.3-01', '<=>1', 'v1.2.3.4', '^>1', '~~1', 'V1.2.3', 'a.b.c', '1.2.3+', '==1.2.3',
  'vv1.2.3', '>v=1.2.3', '1.2.3-beta.01', '1.2.', '.1', '1..2', '~>>1', '<1.2.3-', 'x1', '1x', '^01'
]
const simple = () => {
  if (chance(0.04)) return pick(GARBAGE)
  const kind = pick(['bare', 'bare', 'op', 'op', 'op', 'caret', 'caret', 'tilde', 'tilde', 'any'])
  const space = chance(0.1) ? ' ' : ''
  switch (kind) {
    case 'bare': return partial()
    case 'op': return pick(['<', '<=', '>', '>=', '=']) + space + partial()
    case 'caret': return '^' + space + partial()
    case 'tilde': return pick(['~', '~', '~>']) + space + partial()
    default: return pick(['*', 'x', 'X', '>=0.0.0', '>=0', '^*', '~x', ''])
  }
}
const comparatorSet = () => {
  if (chance(0.12)) return `${partial()} - ${partial()}`
  const n = 1 + Math.floor(rand() * 3)
  const items = []
  for (let i = 0; i < n; i++) items.push(simple())
  return items.join(chance(0.12) ? ', ' : pick([' ', ' ', '  ']))
}
const rangeText = () => {
  const n = chance(0.7) ? 1 : chance(0.7) ? 2 : 3
  const sets = []
  for (let i = 0; i < n; i++) sets.push(comparatorSet())
  return sets.join(pick([' || ', '||', ' ||  ']))
}

// Hand-picked cases first: documented examples and node-semver's quirks that zoostore keeps.
const CURATED = [
  '1.2.3', '=1.2.3', 'v1.2.3', '=v1.2.3', '^1.2.3', '^1.2', '^1', '^0.2.3', '^0.0.3', '^0.0', '^0', '^1.2.x',
  '^0.0.x', '^1.2.3-beta.2', '^0.0.3-beta', '~1.2.3', '~1.2', '~1', '~0.2.3', '~1.2.3-beta.2', '~>1.2', '~> 1.2.3',
  '1.x', '1.2.x', '1.2.*', '1.X', '1', '1.2', '*', 'x', '', '>=1.2.7', '>=1.2.7 <1.3.0', '1.2.7 || >=1.2.9 <2.0.0',
  '>1.2', '>1', '<=1.2', '<=1', '<1.2', '<1', '>=1.2', '>=1', '=1.2', '>*', '<*', '>=*', '<=*',
  '1.2.3 - 2.3.4', '1.2 - 2.3.4', '1.2.3 - 2.3', '1.2.3 - 2', '1.2.3-beta - 2.0.0-rc.1', '* - 2', '1.2.3 - *',
  '>=1.2.3-beta <2', '1.2.3-pr.1 || 2', '>1.2.3-alpha.3', '>=1.2, <2', '>=1.2.3, <1.3.0 || ^2',
  '^1.2.3+build', '1.2.3+build.5 - 2.0.0+x', '>= 1.2.3', '< 2', '^ 1.2', '~ 1.2',
  '* || 1.2.3-beta', '>=0.0.0 || 1.2.3-beta', '>=v0.0.0 || 1.2.3-beta', '^1.x.3', '~1.x.3', '+x', 'vx',
  '==1.2', '1 - =2.0.0-beta', 'v1.2.3 - v2.0.0', '<0.0.0-0 || 1', '1 || || 2', '1 ||', '<0.0.0-0',
  '>=1.0.0 <1.0.0', '^0.0.0', '~0.0.0', '>=0.0.0-0', '0.0.0 - 1', 'v0.0.0 - 1',
  'latest', 'bleedingedge', '1.2.3.4', '1.x.3', '=1.2.3 - 2', '1 - =2.0.0', '>==1.2.3', '1 | 2', '~', '^',
  '>=1.2.3 - 2', '1.2.3 -2', '1 - 2 - 3', '>= = 1', '>=9007199254740991.0.0', '^9007199254740991.1',
  '9007199254740992.0.0',
]

const bitmask = (bits) => {
  let hex = ''
  for (let i = 0; i < bits.length; i += 4) {
    let digit = 0
    for (let j = 0; j < 4 && i + j < bits.length; j++) digit |= (bits[i + j] ? 1 : 0) << j
    hex += digit.toString(16)
  }
  return hex
}
const indexOfMax = (pool, indices, range) => {
  const chosen = indices.map((i) => pool[i])
  const best = semver.maxSatisfying(chosen, range)
  return best === null ? -1 : indices[chosen.indexOf(best)]
}

const seen = new Set()
const ranges = []
const add = (r) => {
  if (seen.has(r)) return
  seen.add(r)
  const nodeText = r.replace(/,/g, ' ')
  let parsed = null
  try {
    parsed = new semver.Range(nodeText)
  } catch (e) {
    ranges.push({ r, ok: false })
    return
  }
  const all = versions.map((_, i) => i)
  const subset = all.slice().sort(() => rand() - 0.5).slice(0, 8)
  ranges.push({
    r,
    ok: true,
    d: parsed.range,
    m: bitmask(versions.map((v) => semver.satisfies(v, nodeText))),
    x: indexOfMax(versions, all, nodeText),
    s: [subset, indexOfMax(versions, subset, nodeText)],
  })
}
CURATED.forEach(add)
while (ranges.length < RANGE_COUNT) add(rangeText())

const valid = versions.map((v) => semver.valid(v))
const rank = versions.map((v, i) => valid[i] === null ? null
  : versions.filter((w, j) => valid[j] !== null && semver.compare(w, v) < 0).length)

process.stdout.write(JSON.stringify({
  generator: 'tests/data/gen_semver_vectors.js',
  semver: require('semver/package.json').version,
  versions,
  valid,
  rank,
  ranges,
}, null, 0).replace(/\},\{"r"/g, '},\n{"r"') + '\n')
