"""Layer maps: which student layer learns from which teacher layer (0 = the embeddings).

- "uniform": TinyBERT's k = L_T / L_S, student layer i <- teacher layer round(i * k) (embeddings 0 <- 0 where the
  loss includes them);
- "last": the student's last layer <- the teacher's last (MiniLM);
- an explicit list of [student, teacher] pairs, checked against both models' depths.

Plain Python: the study file's checks use it before any model is loaded.
"""

from __future__ import annotations

from typing import Union

from searcher.errors import ConfigError

NAMED = ("uniform", "last")


def pairs(layer_map: Union[str, tuple], student_layers: int, teacher_layers: int, embeddings: bool = False,
          lowest: int = 0) -> list[tuple[int, int]]:
    """(student, teacher) layer pairs for models of these depths. `lowest` is the first layer a loss can read
    (0 for hidden states, which start with the embeddings; 1 for attention)."""
    if layer_map == "uniform":
        found = [(i, round(i * teacher_layers / student_layers)) for i in range(1, student_layers + 1)]
        return ([(0, 0)] if embeddings and lowest == 0 else []) + found
    if layer_map == "last":
        return [(student_layers, teacher_layers)]
    out = [(int(s), int(t)) for s, t in layer_map]
    bad = [(s, t) for s, t in out if not (lowest <= s <= student_layers and lowest <= t <= teacher_layers)]
    if bad:
        s, t = bad[0]
        raise ConfigError(f"layer map pair [{s}, {t}] is out of range for a student of {student_layers} and a teacher "
                          f"of {teacher_layers} layers (layers {lowest}..L{', 0 = the embeddings' if lowest == 0 else ''})"
                          f"; fix its layer_map or use \"uniform\"")
    return out


def parse(value, where: str) -> Union[str, tuple]:
    """A study file's layer_map: "uniform", "last" or a list of [student, teacher] integer pairs."""
    if isinstance(value, str):
        if value not in NAMED:
            raise ConfigError(f"{where} must be \"uniform\", \"last\" or a list of [student, teacher] layer pairs, got "
                              f"{value!r}")
        return value
    ok = isinstance(value, list) and value and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                                                    for x in p) for p in value)
    if not ok:
        raise ConfigError(f"{where} must be \"uniform\", \"last\" or a non-empty list of [student, teacher] pairs of "
                          f"layer numbers (0 = the embeddings), e.g. [[0, 0], [1, 6], [2, 12]]; got {value!r}")
    return tuple((p[0], p[1]) for p in value)


def describe(layer_map: Union[str, tuple]) -> str:
    if isinstance(layer_map, str):
        return layer_map
    return ", ".join(f"{s}<-{t}" for s, t in layer_map)
