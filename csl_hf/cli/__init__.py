"""What only the command-line scripts use: their argument dataclasses and ``--help`` (`arguments`), the console
(`console`) and the steps of a run (`steps`). Library users need none of it."""
