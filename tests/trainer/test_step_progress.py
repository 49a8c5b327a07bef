"""The per-step console line: position, elapsed time, an ETA from the wall time between steps, headline numbers."""

from __future__ import annotations

from longrl.trainer.progress import StepProgress, clock_time, headline


class Clock:
    """A hand-advanced clock, so elapsed and ETA are exact."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_clock_time():
    assert [clock_time(s) for s in (0, 59.4, 61, 3600 * 27 + 62)] == ["0:00:00", "0:00:59", "0:01:01", "27:01:02"]


def test_eta_is_the_mean_wall_time_between_steps_times_the_steps_left():
    clock = Clock()
    progress = StepProgress(total_steps=5, now=clock)
    clock.t += 30  # start-up and the validation before training
    assert progress.line(0, {"val/accuracy": 0.5}) == "step 0/5 | elapsed 0:00:30 | val_acc 0.500"
    clock.t += 10
    assert progress.line(1, {"timing_s/step": 9.0, "sft/loss": 2.5}) == \
        "step 1/5 | elapsed 0:00:40 | eta 0:00:40 | loss 2.5000 | 9.0 s/step"
    clock.t += 20  # a step with validation: 20 s of wall time, 8 s of it the step
    assert progress.line(2, {"timing_s/step": 8.0}) == "step 2/5 | elapsed 0:01:00 | eta 0:00:45 | 8.0 s/step"


def test_a_resumed_process_times_its_first_step_by_the_step_itself():
    clock = Clock()
    progress = StepProgress(total_steps=10, now=clock)
    clock.t += 120  # start-up: workers, model, checkpoint load
    assert progress.line(7, {"timing_s/step": 4.0}) == "step 7/10 | elapsed 0:02:00 | eta 0:00:12 | 4.0 s/step"


def test_headline_picks_the_first_present_key_and_skips_the_rest():
    metrics = {"critic/kl": 0.00123, "critic/score/mean": -0.5, "val/reward": 1.0, "actor/pg_loss": 3.0}
    assert headline(metrics) == "reward -0.500 kl 1.23e-03 val_reward 1.000"
    assert headline({"actor/kl_loss": 0.5, "critic/kl": 0.1}) == "kl 5.00e-01"
