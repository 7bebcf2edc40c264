"""examples/quickstart_report.py: fairseq-train logs -> loss curve and validation cost; seeded samples.

Oracles: training logs written by hand in fairseq's ``simple`` and ``json`` formats (the line
shapes fairseq 0.12's progress bars print), with known losses, updates and timestamps; a
quickstart work folder written by hand whose hypotheses equal the references (ROUGE and BLEU
100) and whose generate output lists the examples out of order.
"""
import importlib.util
import os
import random
import struct

import pytest

from conftest import REPO

spec = importlib.util.spec_from_file_location("quickstart_report", os.path.join(REPO, "examples", "quickstart_report.py"))
qr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(qr)

CONFIG = ("2026-12-01 10:00:00 | INFO | fairseq_cli.train | {'_name': None, 'common': {'log_format': 'simple'}, "
          "'task': {'_name': 'pseudo_masked_lm'}}")
# (clock, update, train loss) and (validation begins, validation record, update, valid loss)
TRAIN = [("10:00:10", 5, 14.5), ("10:00:20", 10, 13.25), ("10:00:40", 15, 12.0), ("10:00:50", 20, 11.5)]
VALID = [("10:00:21", "10:00:24", 10, 13.0), ("10:00:51", "10:00:56", 20, 11.125)]


def simple_log(train=TRAIN, valid=VALID, subset="valid_n300", done=60.5, stop="cumulative_training_time"):
    events = [(t, f"2026-12-01 {t} | INFO | train_inner | epoch 001:     {u:>2d} / 907 loss={loss}, "
                  f"nll_loss={loss - 0.5}, accuracy=1.5, ppl=20000, wps=30, ups=0.5, wpb=450, bsz=48, "
                  f"num_updates={u}, lr=2e-05, gnorm=20.5, clip=100, train_wall=9, wall=10")
              for t, u, loss in train]
    for begin, end, u, loss in valid:
        events.append((begin, f'2026-12-01 {begin} | INFO | fairseq_cli.train | begin validation on "{subset}" subset'))
        events.append((begin, f"2026-12-01 {begin} | INFO | fairseq.tasks.fairseq_task | creating new batches for epoch 1"))
        events.append((end, f"2026-12-01 {end} | INFO | {subset} | epoch 001 | valid on '{subset}' subset | "
                            f"loss {loss} | nll_loss {loss - 0.5} | accuracy 2 | ppl 3000 | wps 250 | wpb 378.3 | "
                            f"bsz 42.9 | num_updates {u} | best_loss {loss}"))
    events.sort(key=lambda e: e[0])  # stable: a validation's lines stay in order
    lines = [CONFIG] + [line for _, line in events]
    lines += [f"2026-12-01 10:00:57 | INFO | fairseq_cli.train | Stopping training due to {stop}: 0.1 > 0.05",
              "2026-12-01 10:00:58 | INFO | train | epoch 001 | loss 13.1 | num_updates 20 | train_wall 50 | wall 58",
              f"2026-12-01 10:00:58 | INFO | fairseq_cli.train | done training in {done} seconds"]
    return "\n".join(lines) + "\n"


def json_log(train=TRAIN, valid=VALID, subset="valid_n300", done=60.5, stop="num_updates"):
    import json
    events = [(t, f"2026-12-01 {t} | INFO | train_inner | " + json.dumps(
        {"epoch": 1, "update": u / 907, "loss": str(loss), "nll_loss": str(loss - 0.5), "num_updates": str(u),
         "lr": "2e-05", "train_wall": "9", "wall": "10"})) for t, u, loss in train]
    for begin, end, u, loss in valid:
        events.append((begin, f'2026-12-01 {begin} | INFO | fairseq_cli.train | begin validation on "{subset}" subset'))
        events.append((end, f"2026-12-01 {end} | INFO | {subset} | " + json.dumps(
            {"epoch": 1, f"{subset}_loss": str(loss), f"{subset}_nll_loss": str(loss - 0.5),
             f"{subset}_num_updates": str(u), f"{subset}_best_loss": str(loss)})))
    events.sort(key=lambda e: e[0])
    lines = [CONFIG] + [line for _, line in events]
    lines += [f"2026-12-01 10:00:57 | INFO | fairseq_cli.train | Stopping training due to {stop}: 20 >= 20",
              '2026-12-01 10:00:58 | INFO | train | {"epoch": 1, "train_loss": "13.1", "train_num_updates": "20"}',
              f"2026-12-01 10:00:58 | INFO | fairseq_cli.train | done training in {done} seconds"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("fmt", ["simple", "json"])
def test_read_training_log_both_formats(tmp_path, fmt):
    path = tmp_path / "train.log"
    path.write_text(simple_log() if fmt == "simple" else json_log())
    log = qr.read_training_log(str(path))
    assert log.train == [(u, loss) for _, u, loss in TRAIN]
    assert log.valid == {"valid_n300": [(u, loss) for _, _, u, loss in VALID]}
    assert log.validation_seconds == [3.0, 5.0]  # 10:00:21 -> :24 and 10:00:51 -> :56
    assert log.training_seconds == 60.5 and log.runs == 1
    assert log.stopped_by == ("cumulative_training_time" if fmt == "simple" else "num_updates")
    assert log.last_update == 20


def test_resumed_run_replaces_the_updates_it_repeats(tmp_path):
    """Run 1 logged up to update 20 but its checkpoint was at 10; run 2 resumes there."""
    run2_train = [("10:00:10", 15, 12.75), ("10:00:20", 20, 12.25), ("10:00:30", 25, 11.0)]
    run2_valid = [("10:00:21", "10:00:23", 20, 11.75)]
    path = tmp_path / "train.log"
    path.write_text(simple_log() + simple_log(train=run2_train, valid=run2_valid, done=39.5))
    log = qr.read_training_log(str(path))
    assert log.train == [(5, 14.5), (10, 13.25), (15, 12.75), (20, 12.25), (25, 11.0)]
    assert log.valid == {"valid_n300": [(10, 13.0), (20, 11.75)]}
    assert log.validation_seconds == [3.0, 5.0, 2.0]  # every validation ran and cost time
    assert log.training_seconds == 100.0 and log.runs == 2


def test_validation_summary_states_count_time_and_share(tmp_path):
    path = tmp_path / "train.log"
    path.write_text(simple_log(done=80.0))
    text = qr.validation_summary(qr.read_training_log(str(path)))
    assert text == ("2 validations took 8 s in total (4.0 s each, from the log's timestamps), "
                    "10.0 % of the 80 s fairseq-train spent training (1 run).")
    assert qr.validation_summary(qr.TrainingLog()) == "No validation in the training log."


def test_millisecond_timestamps_of_logging_default_format(tmp_path):
    path = tmp_path / "train.log"
    path.write_text('2026-12-01 10:00:21,250 | INFO | fairseq_cli.train | begin validation on "valid" subset\n'
                    '2026-12-01 10:00:23,000 | INFO | valid | epoch 001 | valid on \'valid\' subset | loss 9.5 | '
                    'num_updates 10\n')
    log = qr.read_training_log(str(path))
    assert log.validation_seconds == [1.75] and log.valid == {"valid": [(10, 9.5)]}


def test_broken_train_record_is_a_one_line_error_with_file_and_line(tmp_path):
    path = tmp_path / "train.log"
    path.write_text(CONFIG + "\n2026-12-01 10:00:10 | INFO | train_inner | {\"loss\": \"14.5\", \"num_upd\n")
    with pytest.raises(ValueError, match=rf"{path}:2: unreadable JSON log record"):
        qr.read_training_log(str(path))
    with pytest.raises(SystemExit, match=r"quickstart_report.py curve: .*train.log:2: unreadable JSON"):
        qr.main(["curve", "--log", str(path), "--out", str(tmp_path / "x.png")])
    path.write_text(CONFIG + "\n2026-12-01 10:00:10 | INFO | train_inner | epoch 001:  5 / 9 loss=nope, num_updates=5\n")
    with pytest.raises(ValueError, match=rf"{path}:2: 'nope' is not a number"):
        qr.read_training_log(str(path))


def test_loss_figure_plots_the_logged_points_and_the_png_is_written(tmp_path, capsys):
    path = tmp_path / "train.log"
    path.write_text(json_log())
    log = qr.read_training_log(str(path))
    fig = qr.loss_figure(log, title="t")
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    train = lines["train (mean over each log interval)"]
    valid = lines["validation (valid_n300)"]
    assert list(train.get_xdata()) == [5, 10, 15, 20] and list(train.get_ydata()) == [14.5, 13.25, 12.0, 11.5]
    assert list(valid.get_xdata()) == [10, 20] and list(valid.get_ydata()) == [13.0, 11.125]
    out = tmp_path / "curve.png"
    qr.main(["curve", "--log", str(path), "--out", str(out)])
    head = out.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", head[16:24]) == (900, 504)  # 7.5 x 4.2 in at 120 dpi
    assert "4 train and 2 validation points up to update 20" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no train_inner or validation records"):
        qr.loss_figure(qr.TrainingLog())


def test_sample_ids_are_seeded_distinct_sorted_and_ignore_global_random_state():
    random.seed(123)
    a = qr.sample_ids(2333, 8, seed=1)
    random.seed(456)
    assert qr.sample_ids(2333, 8, seed=1) == a
    assert len(set(a)) == 8 and a == sorted(a) and all(0 <= i < 2333 for i in a)
    assert qr.sample_ids(2333, 8, seed=2) != a
    assert qr.sample_ids(5, 8) == [0, 1, 2, 3, 4]
    assert qr.sample_ids(5, 0) == []


def test_samples_table_is_markdown_with_escaped_cells():
    table = qr.samples_table([("source", ["a : b", "x | y", "c"]), ("reference", ["r0", "r1", "r2"]),
                              ("generated", ["g0", "", "g2"])], [1, 2])
    assert table.splitlines() == [
        "| id | source | reference | generated |",
        "|---:|---|---|---|",
        "| 1 | x \\| y | r1 | *(empty)* |",
        "| 2 | c | r2 | g2 |",
    ]
    with pytest.raises(ValueError, match="different numbers of examples: source 2, generated 1"):
        qr.samples_table([("source", ["a", "b"]), ("generated", ["g"])], [0])


@pytest.mark.slow
def test_quickstart_report_scores_curve_and_samples(tmp_path):
    """Hypotheses equal to the references score 100; the samples show each id's own output."""
    refs = [f"the act of giving number {i} away" for i in range(12)]
    srcs = [f"word{i} : an example sentence with word{i} in it" for i in range(12)]
    work = tmp_path / "work"
    work.mkdir()
    (work / "test.src").write_text("".join(s + "\n" for s in srcs))
    (work / "test.tgt").write_text("".join(r + "\n" for r in refs))
    order = list(range(12))
    random.Random(0).shuffle(order)  # fairseq-generate prints batches out of order
    (work / "generate-test.txt").write_text("".join(
        f"S-{i}\t{srcs[i]}\nT-{i}\t{refs[i]}\nH-{i}\t-0.5\t{refs[i]}\nD-{i}\t-0.5\t{refs[i]}\n" for i in order))
    (work / "train.log").write_text(simple_log())
    qr.main(["quickstart", "--work", str(work), "--log", str(work / "train.log"),
             "--generate-output", str(work / "generate-test.txt"), "--source", str(work / "test.src"),
             "--reference", str(work / "test.tgt"), "--test-total", "2333", "--label", "model", "--samples", "3"])
    md = (work / "results.md").read_text()
    assert md.startswith("WordNet definition modelling, the first 12 of the 2,333 test pairs\n")
    assert "| model | 100.00 | 100.00 | 100.00 | 100.00 |" in md
    assert "| copy the source |" in md and "| first 7 words of the example |" in md
    assert ("Training used its time budget (--stop-time-hours) at update 20. 2 validations took 8 s" in md)
    rows = [line for line in md.splitlines() if line.startswith("| ") and " : " in line]
    ids = qr.sample_ids(12, 3, seed=qr.SAMPLE_SEED)
    assert rows == [f"| {i} | {srcs[i]} | {refs[i]} | {refs[i]} |" for i in ids]
    assert (work / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
