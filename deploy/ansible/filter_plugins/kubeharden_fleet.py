"""Filters of the kubeharden playbooks: reading `kubeharden apply -o json` and summarising a
fleet's `kubeharden audit -o json` reports (per check: how many nodes PASS/FAIL/WARN/INFO)."""

from xml.sax.saxutils import escape, quoteattr

STATUSES = ("PASS", "FAIL", "WARN", "INFO")


def kubeharden_apply_summary(result):
    """One line per component plus whether anything changed."""
    result = result or {}
    lines = ["changed: %s" % bool(result.get("changed"))]
    comps = result.get("components")
    if isinstance(comps, dict):
        comps = [dict(v, component=k) if isinstance(v, dict) else {"component": k, "status": v}
                 for k, v in sorted(comps.items())]
    for c in comps or []:
        lines.append("%s: %s" % (c.get("component", "?"), c.get("status", c)))
    for r in result.get("rolled_back", []) or []:
        lines.append("rolled back %s: %s" % (r.get("check"), r.get("reason")))
    return lines


def kubeharden_rollback_reason(result, stderr=""):
    """Why apply rolled back: the checks and reasons from its JSON, else its error, else stderr."""
    result = result or {}
    parts = ["%s: %s" % (r.get("check"), r.get("reason"))
             for r in result.get("rolled_back", []) or [] if isinstance(r, dict)]
    committed = result.get("applied") or []
    if parts:
        msg = "rolled back " + "; ".join(parts)
        if committed:
            ids = [a.get("check", a) if isinstance(a, dict) else a for a in committed]
            msg += " (committed: %s)" % ", ".join(str(i) for i in ids)
        return msg
    return kubeharden_message(result, stderr)


def kubeharden_message(result, stderr=""):
    """What kubeharden said went wrong: apply's JSON `critical` (the rollback that failed, with
    the commands to run by hand), else its `error` (a string, or an object with `message`),
    else its stderr from the first CRITICAL line on, else all of its stderr."""
    result = result if isinstance(result, dict) else {}
    if result.get("critical"):
        return str(result["critical"])
    err = result.get("error")
    if isinstance(err, dict) and (err.get("message") or err.get("cause")):
        return str(err.get("message") or err.get("cause"))
    if isinstance(err, str) and err:
        return err
    lines = (stderr or "").splitlines()
    for i, line in enumerate(lines):
        if "CRITICAL" in line:
            return "\n".join(lines[i:]).strip()
    return (stderr or "").strip() or "no message"


def kubeharden_fleet_summary(hosts, hostvars):
    """Per check, the nodes in each status; per node, its benchmark and summary."""
    nodes, missing, checks = {}, [], {}
    for host in hosts:
        rep = (hostvars.get(host) or {}).get("kubeharden_audit")
        if not isinstance(rep, dict):
            missing.append(host)
            continue
        nodes[host] = {"benchmark": rep.get("benchmark"), "summary": rep.get("summary")}
        for c in rep.get("checks", []):
            e = checks.setdefault(c["id"], {"id": c["id"], "text": c.get("text", ""),
                                            "nodes": {s: [] for s in STATUSES}})
            e["nodes"].setdefault(c["status"], []).append(host)
    out = []
    for cid in sorted(checks, key=lambda i: [int(p) if p.isdigit() else p for p in i.split(".")]):
        e = checks[cid]
        for s in STATUSES:
            e[s] = len(e["nodes"].get(s, []))
        out.append(e)
    totals = {s: sum(c[s] for c in out) for s in STATUSES}
    totals["nodes"] = len(nodes)
    totals["checks"] = len(out)
    totals["checks_failing_somewhere"] = sum(1 for c in out if c["FAIL"])
    return {"nodes": nodes, "missing": missing, "checks": out, "totals": totals}


def kubeharden_fleet_junit(summary):
    """The fleet summary as JUnit XML: one testcase per check, failed if it FAILs on any node."""
    checks = summary.get("checks", [])
    fails = sum(1 for c in checks if c["FAIL"])
    skipped = sum(1 for c in checks if not c["FAIL"] and (c["WARN"] or c["INFO"]))
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<testsuites name="kubeharden fleet audit" tests="%d" failures="%d" skipped="%d">'
             % (len(checks), fails, skipped),
             '  <testsuite name="fleet" tests="%d" failures="%d" skipped="%d">'
             % (len(checks), fails, skipped)]
    for c in checks:
        counts = ", ".join("%s %d" % (s, c[s]) for s in STATUSES)
        lines.append('    <testcase name=%s classname="kubeharden.fleet">'
                     % quoteattr("%s %s" % (c["id"], c["text"])))
        if c["FAIL"]:
            lines.append('      <failure message=%s>%s</failure>'
                         % (quoteattr("FAIL on %s" % ", ".join(c["nodes"]["FAIL"])),
                            escape(counts)))
        elif c["WARN"] or c["INFO"]:
            lines.append('      <skipped message=%s/>' % quoteattr(counts))
        lines.append('      <system-out>%s</system-out>' % escape(counts))
        lines.append('    </testcase>')
    lines += ['  </testsuite>', '</testsuites>', '']
    return "\n".join(lines)


class FilterModule(object):
    def filters(self):
        return {
            "kubeharden_apply_summary": kubeharden_apply_summary,
            "kubeharden_rollback_reason": kubeharden_rollback_reason,
            "kubeharden_message": kubeharden_message,
            "kubeharden_fleet_summary": kubeharden_fleet_summary,
            "kubeharden_fleet_junit": kubeharden_fleet_junit,
        }
