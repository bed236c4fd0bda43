"""Accessibility checks in a real browser: npm's axe-core (installed by scripts/test in
var/tools/axe, never by hand) run inside Debian's chromium, plus the house rules axe does not
know (numbers right-aligned, the page shown marked in the nav).

axe is added with ``context.add_init_script``: Playwright hands it to chromium over the
DevTools protocol before each page's own scripts, so the pages keep their real
Content-Security-Policy (``script-src 'self'``) during the check.
"""

from __future__ import annotations

from tests.support.environment import AXE

BLOCKING = ("serious", "critical")

_RUN_AXE = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 4).map(n => n.target.join(" ") + ": " + (n.failureSummary || "").replace(/\\s+/g, " "))}));
}"""

# In a table with columns (a thead), a cell that holds one number (with an optional unit) must be
# right-aligned, and so must the header of its column; text cells beside numbers ("run #12",
# "2026-11-29", "1 / 0 / 10") are not numbers. A label | value sheet (no thead) has no number column.
_MISALIGNED_NUMBERS = r"""() => {
  const number = /^[-+]?\d[\d,]*(\.\d+)?\s*(%|h|s|ms|min|bytes|B|KB|MB|GB|rows|cells)?$/;
  const right = el => ["right", "end"].includes(getComputedStyle(el).textAlign);
  const found = [];
  for (const table of document.querySelectorAll("main table")) {
    if (!table.tHead) continue;
    const head = table.tHead && table.tHead.rows.length === 1 ? table.tHead.rows[0] : null;
    const plainHead = head && [...head.cells].every(c => c.colSpan === 1);
    for (const row of table.querySelectorAll("tbody tr")) {
      const plainRow = [...row.cells].every(c => c.colSpan === 1);
      for (const cell of row.cells) {
        if (cell.tagName !== "TD" || !number.test(cell.textContent.trim())) continue;
        const where = (table.id ? "#" + table.id : "table" + (table.className ? "." + table.className.split(" ").join(".") : ""));
        if (!right(cell)) found.push(`${where}: cell "${cell.textContent.trim()}" is not right-aligned`);
        const th = plainHead && plainRow ? head.cells[cell.cellIndex] : null;
        if (th && !right(th)) found.push(`${where}: header "${th.textContent.trim()}" of a number column is not right-aligned`);
      }
    }
  }
  return [...new Set(found)];
}"""


def add_axe(context) -> None:
    """Make ``axe`` available on every page the browser context opens."""
    if not AXE.is_file():
        raise RuntimeError(f"axe-core is missing at {AXE}; scripts/test installs it (npm install into var/tools/axe).")
    context.add_init_script(path=str(AXE))


def axe_violations(page, impacts=BLOCKING) -> list[str]:
    """axe's violations of ``impacts`` on the page as shown, one line each (rule, impact, where).
    Waits for the page's load event first: right after a click the URL may have changed while the
    new document is not parsed yet, and axe then finds no document to check."""
    page.wait_for_load_state("load")
    found = page.evaluate(_RUN_AXE)
    return [f"{v['id']} ({v['impact']}): {v['help']} -> " + " | ".join(v["nodes"])
            for v in found if v["impact"] in impacts]


def misaligned_numbers(page) -> list[str]:
    return page.evaluate(_MISALIGNED_NUMBERS)


def current_nav_links(page) -> list[str]:
    """The hrefs the top bar marks as the page shown (aria-current="page")."""
    return page.eval_on_selector_all("header.topbar [aria-current=page]", "els => els.map(e => e.getAttribute('href'))")
