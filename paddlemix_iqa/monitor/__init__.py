"""Quality monitoring over time: a metric's series per camera, with threshold, drift and recovery alerts.

``paddlemix-iqa monitor run | report | demo`` (:mod:`.cli`); the pieces: :mod:`.sources`
(CSV or folder -> dated frames), :mod:`.store` (SQLite state), :mod:`.detect` (the
alert rules, pure), :mod:`.core` (scoring with the registered scorers, sending alerts),
:mod:`.report` (plots) and :mod:`.demo` (a generated dusty camera).
"""
