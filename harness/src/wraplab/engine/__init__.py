"""The scenario engine: scenarios as data plus steps, run against a target in a lab, judged
into a verdict with its evidence.

One module, one concern:

- :mod:`~wraplab.engine.axes` — the matrix's axes, the SERVER options, the guards;
- :mod:`~wraplab.engine.verdicts` — verdicts, expectations (``DEFENDED.by("kernel")``);
- :mod:`~wraplab.engine.scenarios` — loading and checking scenario files;
- :mod:`~wraplab.engine.cells` — cells and outcomes;
- :mod:`~wraplab.engine.evidence` — what the actors saw (Wrap, Intrusion, Flood);
- :mod:`~wraplab.engine.actors` — the roles' verbs and the barriers that order them;
- :mod:`~wraplab.engine.context` — the scenario context (transcript, observation);
- :mod:`~wraplab.engine.judge` — the common verdict ("no attack, no verdict");
- :mod:`~wraplab.engine.steps` — steps shared by several scenarios;
- :mod:`~wraplab.engine.runner` — a fresh lab per cell, outcomes, many cells.

See :mod:`wraplab.engine.scenarios` for the shape of a scenario file.
"""

from wraplab.engine.actors import Actor, HarnessError, HeldWrap, RunningFlood, SwappedSocket
from wraplab.engine.axes import BASES, GUARDS, LABS, SERVER_OPTIONS, USER_ROLES
from wraplab.engine.cells import Cell, Outcome, Step, make_cells
from wraplab.engine.context import Context
from wraplab.engine.evidence import LOOP_ENDS, Flood, Intrusion, Wrap, rejections_of
from wraplab.engine.judge import attack_did_not_happen
from wraplab.engine.runner import make_lab, run_cell, run_cells
from wraplab.engine.scenarios import (
                                      SCENARIO_DIR,
                                      Scenario,
                                      ScenarioError,
                                      discover,
                                      get_scenario,
                                      load_scenario,
)
from wraplab.engine.steps import (
                                      FLOOD_HANDOFFS,
                                      back_to_baseline,
                                      claim_foreign_pid,
                                      deputy_passes,
                                      file_text,
                                      handoffs_under_flood,
                                      judge_stall,
                                      log_lines,
                                      same_state,
                                      server_state,
                                      starts_server,
                                      wrap_seen_from_outside,
)
from wraplab.engine.verdicts import (
                                      BROKEN,
                                      DEFENDED,
                                      ERROR,
                                      NOT_RUN,
                                      VULNERABLE,
                                      Expected,
                                      Judgement,
                                      Verdict,
                                      broken_by_g8,
                                      combine,
                                      flood_before_g8,
)

__all__ = [
    "Verdict", "DEFENDED", "VULNERABLE", "BROKEN", "ERROR", "NOT_RUN", "Expected", "Judgement",
    "broken_by_g8", "combine", "flood_before_g8",
    "Scenario", "ScenarioError", "load_scenario", "discover", "get_scenario", "SCENARIO_DIR",
    "Cell", "Outcome", "Step", "make_cells", "Context", "Actor", "HeldWrap", "RunningFlood",
    "SwappedSocket", "HarnessError", "Wrap", "Intrusion", "Flood", "LOOP_ENDS", "rejections_of",
    "attack_did_not_happen", "claim_foreign_pid", "deputy_passes", "handoffs_under_flood",
    "FLOOD_HANDOFFS",
    "judge_stall", "same_state", "server_state",
    "back_to_baseline", "starts_server", "file_text", "log_lines", "wrap_seen_from_outside",
    "make_lab", "run_cell", "run_cells",
    "LABS", "BASES", "USER_ROLES", "SERVER_OPTIONS", "GUARDS",
]
