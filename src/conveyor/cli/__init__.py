"""The ``conveyor`` command: talks to people, reads settings, wires the stores."""
