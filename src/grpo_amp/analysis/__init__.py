"""Reading what the rules wrote: predictions, per-run summaries, intervals (``stats``), claim verdicts, E5's
ladder and figures. Reads files and frames only; nothing here trains or samples.
"""
