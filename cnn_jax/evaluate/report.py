"""The run report: ``workdir/report.md`` and a self-contained ``workdir/report.html``.

The report is first built as a list of blocks (heading, paragraph, list, table, image),
then rendered twice, once as Markdown and once as HTML with inline CSS; figures are
referenced by their path relative to the workdir, so the folder can be moved as a whole.
"""

import datetime
import html
import math
import os

from cnn_jax.config import flat_items
from cnn_jax.evaluate.diagnose import Diagnosis

# Per-epoch rows shown in the training table; longer histories are thinned evenly.
MAX_HISTORY_ROWS = 30
MAX_HISTORY_COLUMNS = 10
PER_CLASS_COLUMNS = ("precision", "recall", "specificity", "f1", "support")

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #ddd; padding: .3em .7em; text-align: right; }
th { background: #f4f4f4; }
td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9em; }
"""


def _fmt(value) -> str:
  """A table cell: integers with separators, floats with 4 decimals (or 4 digits)."""
  if isinstance(value, bool) or value is None:
    return str(value)
  if isinstance(value, int):
    return f"{value:,}"
  if isinstance(value, float):
    if not math.isfinite(value):
      return str(value)
    if value != 0 and (abs(value) < 0.01 or abs(value) >= 1e5):
      return f"{value:.4g}"
    return f"{value:.4f}"
  if isinstance(value, (list, tuple)):
    shown = ", ".join(_fmt(v) for v in value[:12])
    return f"[{shown}, ... ({len(value)} items)]" if len(value) > 12 else f"[{shown}]"
  return str(value)


def _key_value_table(d: dict) -> tuple:
  return ("table", ["key", "value"], [[k, _fmt(v)] for k, v in flat_items(d).items()])


def _history_table(history: list[dict]) -> tuple:
  step = max(1, math.ceil(len(history) / MAX_HISTORY_ROWS))
  rows = history[::step]
  if rows and rows[-1] is not history[-1]:
    rows.append(history[-1])
  keys = []
  for row in history:
    keys += [k for k in row if k not in keys and k != "step"]
  metrics = [k for k in keys if k.startswith(("train_", "val_"))]
  others = [k for k in keys if k not in metrics and k != "epoch"]
  columns = (["epoch"] + metrics)[:MAX_HISTORY_COLUMNS - len(others)] + others
  return ("table", columns, [[_fmt(r.get(c, "")) for c in columns] for r in rows])


def _eval_blocks(split: str, results: dict, class_names) -> list[tuple]:
  """Overall scalars and the per-class table of one split's ``compute()`` output."""
  scalars = [[k, _fmt(v)] for k, v in results.items() if isinstance(v, (int, float))]
  blocks = [("heading", 3, f"{split} split"), ("table", ["metric", "value"], scalars)]
  per_class = results.get("per_class")
  if per_class:
    columns = [c for c in PER_CLASS_COLUMNS if c in per_class]
    k = len(per_class[columns[0]])
    names = class_names if class_names and len(class_names) == k else [str(i) for i in range(k)]
    rows = [[names[i]] + [_fmt(per_class[c][i]) for c in columns] for i in range(k)]
    blocks.append(("table", ["class"] + columns, rows))
  return blocks


FIGURE_TITLES = {"roc": "ROC curves", "pr": "Precision-recall curves",
                 "precision_recall": "Precision-recall curves"}


def _title(name: str) -> str:
  return FIGURE_TITLES.get(name, name.replace("_", " ").capitalize())


def _build_blocks(workdir: str, *, config: dict, dataset_info: dict, model_info: dict,
                 history: list[dict], eval_results: dict[str, dict],
                 diagnosis: Diagnosis | None, figures: dict[str, str]) -> list[tuple]:
  """The report's content as blocks; see :func:`write_report` for the arguments."""
  model_name = model_info.get("name", "model")
  dataset_name = dataset_info.get("name", "dataset")
  figure_paths = {k: os.path.relpath(v, workdir) for k, v in figures.items()}

  summary = [f"{len(history)} epoch(s) trained."] if history else ["No training history."]
  for split, results in eval_results.items():
    shown = [k for k in ("accuracy", "loss") if k in results] or [
        k for k, v in results.items() if isinstance(v, float)][:3]
    if shown:
      summary.append(f"{split.capitalize()} " + ", ".join(f"{k} {_fmt(results[k])}"
                                                         for k in shown) + ".")
  if diagnosis is not None:
    summary.append(f"Diagnosis: {diagnosis.verdict}.")
  if "num_params" in model_info:
    summary.append(f"{model_name} has {_fmt(model_info['num_params'])} parameters.")

  blocks = [("heading", 1, f"Run report: {model_name} on {dataset_name}"),
            ("paragraph", f"Workdir {os.path.abspath(workdir)}, written "
                          f"{datetime.datetime.now().isoformat(timespec='seconds')}."),
            ("heading", 2, "Summary"), ("paragraph", " ".join(summary))]
  blocks += [("heading", 2, "Dataset"), _key_value_table(dataset_info),
             ("heading", 2, "Model"), _key_value_table(model_info)]

  blocks.append(("heading", 2, "Training"))
  if "learning_curves" in figure_paths:
    blocks.append(("image", figure_paths.pop("learning_curves"), "Learning curves"))
  if history:
    blocks.append(_history_table(history))

  if eval_results:
    blocks.append(("heading", 2, "Evaluation"))
    for split, results in eval_results.items():
      blocks += _eval_blocks(split, results, dataset_info.get("class_names"))

  if diagnosis is not None:
    blocks += [("heading", 2, "Diagnosis"),
               ("paragraph", f"Verdict: **{diagnosis.verdict}**. {diagnosis.explanation}"),
               ("list", diagnosis.advice),
               ("table", ["evidence", "value"],
                [[k, _fmt(v)] for k, v in diagnosis.evidence.items()])]

  if figure_paths:
    blocks.append(("heading", 2, "Figures"))
    blocks += [("image", path, _title(name)) for name, path in figure_paths.items()]
  blocks += [("heading", 2, "Configuration"), _key_value_table(config)]
  return blocks


def _render_markdown(blocks: list[tuple]) -> str:
  """Markdown text of report blocks."""
  out = []
  for kind, *args in blocks:
    if kind == "heading":
      out.append(f"{'#' * args[0]} {args[1]}")
    elif kind == "paragraph":
      out.append(args[0])
    elif kind == "list":
      out.append("\n".join(f"- {item}" for item in args[0]))
    elif kind == "table":
      header, rows = args
      cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
      lines = ["| " + " | ".join(map(cell, header)) + " |",
               "|" + "|".join("---" for _ in header) + "|"]
      lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
      out.append("\n".join(lines))
    elif kind == "image":
      out.append(f"![{args[1]}]({args[0]})")
  return "\n\n".join(out) + "\n"


def _inline_html(text: str) -> str:
  """Escapes ``text`` and turns ``**bold**`` pairs into ``<strong>``."""
  parts = html.escape(text).split("**")
  return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))


def _render_html(blocks: list[tuple], title: str) -> str:
  """A standalone HTML page (inline CSS) of report blocks."""
  body = []
  for kind, *args in blocks:
    if kind == "heading":
      body.append(f"<h{args[0]}>{html.escape(args[1])}</h{args[0]}>")
    elif kind == "paragraph":
      body.append(f"<p>{_inline_html(args[0])}</p>")
    elif kind == "list":
      body.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in args[0]) + "</ul>")
    elif kind == "table":
      header, rows = args
      head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
      rows_html = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
                          + "</tr>" for row in rows)
      body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>")
    elif kind == "image":
      src, caption = html.escape(args[0], quote=True), html.escape(args[1])
      body.append(f'<figure><img src="{src}" alt="{caption}"><figcaption>{caption}'
                  "</figcaption></figure>")
  return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
          f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
          + "\n".join(body) + "\n</body>\n</html>\n")


def write_report(workdir: str, *, config: dict, dataset_info: dict, model_info: dict,
                 history: list[dict], eval_results: dict[str, dict],
                 diagnosis: Diagnosis | None, figures: dict[str, str]) -> tuple[str, str]:
  """Writes ``workdir/report.md`` and ``workdir/report.html``.

  Args:
    workdir: the run directory; figure paths are made relative to it.
    config: the run's config as a (nested) dict, shown flattened as ``a.b = value``.
    dataset_info: shown as a table; ``name`` titles the report and ``class_names`` (a
      list) labels the per-class tables. Split sizes, image shape etc. go here too.
    model_info: shown as a table; ``name`` and ``num_params`` also appear in the summary.
    history: the per-epoch rows of ``metrics.jsonl``.
    eval_results: ``{split: compute(stats) output}`` (extra scalars such as ``auc`` are
      shown too); numbers become the overall table, ``per_class`` the per-class table.
    diagnosis: from :func:`cnn_jax.evaluate.diagnose.diagnose`, or ``None``.
    figures: ``{name: png path}``; ``learning_curves`` goes to the training section, the
      others to the figures section, titled after their name.

  Returns:
    ``(md_path, html_path)``.
  """
  blocks = _build_blocks(workdir, config=config, dataset_info=dataset_info,
                        model_info=model_info, history=history, eval_results=eval_results,
                        diagnosis=diagnosis, figures=figures)
  os.makedirs(workdir, exist_ok=True)
  md_path = os.path.join(workdir, "report.md")
  html_path = os.path.join(workdir, "report.html")
  with open(md_path, "w", encoding="utf-8") as f:
    f.write(_render_markdown(blocks))
  with open(html_path, "w", encoding="utf-8") as f:
    f.write(_render_html(blocks, blocks[0][2]))
  return md_path, html_path
