"""arc-ttft's Python engine: holds one base model, resets / trains / generates with a LoRA adapter per ARC task.

The TypeScript bridge calls only :func:`arc_ttft.entry.dispatch` (see that module for the protocol). Importing this
package is cheap: torch and transformers load on first use.
"""

__version__ = "0.1.0"
