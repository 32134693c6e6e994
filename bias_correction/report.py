"""Static HTML report per run day and an index page across days, for the people who read the products.

``reports/{region}/{YYYY-MM-DD}/index.html`` shows the day's current product: its quicklook maps (the
PNGs published beside it, linked relatively), skill by lead with 95 % intervals over the last
:data:`SKILL_DAYS` days of verified runs (a PNG drawn here), ocean coverage, the publication gate's
verdict per lead, the inputs' versions and the model in use. ``reports/{region}/index.html`` lists
every day with a report, newest first. Plain HTML and CSS with no external resource, so it renders
from a bucket, a file URL or offline; one inline script marks an image that failed to load (and
records ``data-images="loaded/total"`` on the body, which the browser test reads). Each page is
written atomically.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import os
from typing import Any

import numpy as np

from bias_correction.errors import ProductError
from bias_correction.storage import Store

SKILL_DAYS = 30
CSS = ("body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1200px;color:#111}"
       "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:left}"
       "img{max-width:100%;height:auto;border:1px solid #ddd}.warn{color:#a40000;font-weight:bold}"
       "img.missing{border:2px dashed #a40000;min-height:2em}")
#: Marks images that did not load (a dashed red frame) and counts the loaded ones on the body.
IMAGE_CHECK = ("<script>window.addEventListener('load',function(){var im=document.images,ok=0;"
               "for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0){ok++;}"
               "else{im[i].className='missing';}}document.body.setAttribute('data-images',ok+'/'+im.length);});"
               "</script>")


def report_key(region: str, day: dt.date) -> str:
    return f"reports/{region}/{day.isoformat()}/index.html"


def index_page_key(region: str) -> str:
    return f"reports/{region}/index.html"


def _rel(from_key: str, to_key: str) -> str:
    return os.path.relpath(to_key, os.path.dirname(from_key)).replace(os.sep, "/")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def skill_png(rows: list[Any], title: str) -> bytes:
    """RMSE by lead (corrected, raw, persistence) pooled over the rows, with the bootstrap 95 % intervals
    of the corrected and raw RMSE (mean of the per-run interval bounds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    leads = sorted({r.lead for r in rows})
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, attr, lo, hi, colour in (("corrected", "rmse_corrected", "rmse_corrected_lo", "rmse_corrected_hi", "C0"),
                                       ("raw HYCOM", "rmse_raw", "rmse_raw_lo", "rmse_raw_hi", "C1")):
        sel = {k: [r for r in rows if r.lead == k] for k in leads}
        mid = np.array([np.sqrt(np.mean([getattr(r, attr) ** 2 for r in sel[k]])) for k in leads])
        err_lo = mid - np.array([np.mean([getattr(r, lo) for r in sel[k]]) for k in leads])
        err_hi = np.array([np.mean([getattr(r, hi) for r in sel[k]]) for k in leads]) - mid
        ax.errorbar(leads, mid, yerr=[np.clip(err_lo, 0, None), np.clip(err_hi, 0, None)], fmt="o-", capsize=3,
                    color=colour, label=f"{name} (95 % interval)")
    pers = [[r.rmse_persistence for r in rows if r.lead == k and r.rmse_persistence is not None] for k in leads]
    if all(pers):
        ax.plot(leads, [np.sqrt(np.mean(np.square(p))) for p in pers], "s--", color="C2", label="persistence")
    ax.set_xticks(leads)
    ax.set_xlabel("lead day")
    ax.set_ylabel("RMSE vs OISST (°C)")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def write_day_report(store: Store, region: str, day: dt.date, *, model_id: str | None = None,
                     score_rows: list[Any] | None = None) -> str:
    """Write the report of run day ``day`` (its current product must be published); returns its key."""
    from bias_correction import catalog
    from bias_correction.io import quicklook
    from bias_correction.io.product import as_single_run

    refs = catalog.list_products(store, region, start=day, end=day, model_id=model_id)
    if not refs:
        raise ProductError(f"report {region} {day}: no published product of that run day"
                           + (f" for model {model_id}" if model_id else ""))
    ref = refs[0]
    key = report_key(region, day)
    ds = as_single_run(catalog.open_products(store, region, start=day, end=day, model_id=ref.model_id)
                       .transpose("lead_day", ...))
    prov = json.loads(ds.attrs.get("sstbc_provenance", "{}"))
    leads = [int(k) for k in ds["lead_day"].values]
    ocean = int(ds["ocean_mask"].values.sum())
    parts = [f"<h1>{html.escape(str(ds.attrs.get('title', ref.product_id)))}</h1>",
             f"<p>Product <code>{html.escape(ref.key)}</code> (version {html.escape(ref.product_version)}, "
             f"sha256 {ref.sha256[:12]}…). <a href=\"{_rel(key, index_page_key(region))}\">All days</a></p>"]
    if ref.fallback:
        parts.append(f"<p class=\"warn\">Publication gate failed: this file carries raw HYCOM "
                     f"({html.escape(ref.publication_gate)})</p>")
    parts.append("<h2>Model and inputs</h2>" + _table(
        ["model", "version", "runtime", "provider", "code"],
        [[prov.get("model_id", ref.model_id), prov.get("model_version", ref.model_version), prov.get("runtime", ""),
          prov.get("onnxruntime_provider", ""), json.dumps(prov.get("code_version", ""))]]))
    parts.append(_table(["input", "run / day", "version", "sha256"],
                        [[i.get("input", ""), i.get("run") or i.get("day", ""), i.get("version", ""),
                          str(i.get("sha256", ""))[:12]] for i in prov.get("inputs", [])]))
    rows = []
    for i, k in enumerate(leads):
        finite = int(np.isfinite(ds["sst"].values[i]).sum())
        kept = "raw HYCOM (gate fallback)" if ref.fallback else "corrected"
        rows.append([k, str(ds["time"].values[i])[:10], f"{finite}/{ocean} ({100.0 * finite / max(ocean, 1):.1f} %)",
                     kept, f"{float(np.nanmean(ds['sst_correction'].values[i])):+.3f}"])
    parts.append("<h2>Coverage and what was published, per lead</h2>"
                 + _table(["lead day", "valid day", "ocean cells with data", "published", "mean correction (K)"], rows))
    since = (day - dt.timedelta(days=SKILL_DAYS - 1)).isoformat()
    recent = [r for r in (score_rows or []) if since <= r.run[:10] <= day.isoformat() and r.model_id == ref.model_id]
    parts.append(f"<h2>Skill by lead, runs {since} to {day.isoformat()}</h2>")
    if recent:
        skey = f"reports/{region}/{day.isoformat()}/skill_by_lead.png"
        nruns = len({r.run for r in recent})
        store.write_bytes(skey, skill_png(recent, f"{ref.model_id} {ref.model_version}: {nruns} verified runs, "
                                                  f"{since} to {day.isoformat()}"))
        parts.append(f"<img src=\"{_rel(key, skey)}\" alt=\"RMSE by lead with 95 % intervals\">")
    else:
        parts.append("<p>No verified run in this period yet (OISST of the valid days not published).</p>")
    parts.append("<h2>Maps</h2>")
    for k in leads:
        qkey = quicklook.quicklook_key(ref.key, k)
        if store.exists(qkey):
            parts.append(f"<h3>Lead day {k}</h3><img src=\"{_rel(key, qkey)}\" alt=\"maps, lead day {k}\">")
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>sstbc {html.escape(region)} "
            f"{day.isoformat()}</title><style>{CSS}</style>{IMAGE_CHECK}</head><body>{''.join(parts)}</body></html>\n")
    store.write_bytes(key, page.encode())
    with store.exclusive(index_page_key(region)):  # concurrent backfill dates: nobody's day is dropped
        write_index_page(store, region)
    return key


def write_index_page(store: Store, region: str) -> str:
    """``reports/{region}/index.html``: every day with a report, newest first."""
    key = index_page_key(region)
    days = sorted({k.split("/")[2] for k in store.list(f"reports/{region}") if k.endswith("/index.html")
                   and k.count("/") == 3}, reverse=True)
    items = "".join(f"<li><a href=\"{d}/index.html\">{d}</a></li>" for d in days)
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>sstbc {html.escape(region)} "
            f"reports</title><style>{CSS}</style></head><body><h1>sstbc reports, region {html.escape(region)}</h1>"
            f"<ul>{items}</ul></body></html>\n")
    store.write_bytes(key, page.encode())
    return key
