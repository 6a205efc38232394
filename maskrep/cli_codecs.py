"""``maskrep fit`` and ``maskrep reconstruct`` (filled in with the codecs)."""


def add_commands(sub) -> None:
    return None
