"""``keysvc completion bash|zsh``: a shell completion script, generated from the parser itself.

``source <(keysvc completion bash)`` in ``~/.bashrc``; for zsh, ``source <(keysvc completion zsh)``
in ``~/.zshrc`` (it uses bash completion through ``bashcompinit``). Commands, actions and flags are
completed; the script lists them, so it stays right for the keysvc that printed it.
"""

from __future__ import annotations

import argparse
from typing import Any

from keysvc.commands.tables import emit


def register(subparsers: Any) -> None:
    """Add the ``completion`` command."""
    parser = subparsers.add_parser("completion", help="print a bash or zsh completion script")
    parser.add_argument("shell", choices=("bash", "zsh"))
    parser.set_defaults(handler=run_completion)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(
        option for action in parser._actions for option in action.option_strings if option.startswith("--")
    )


def words(root: argparse.ArgumentParser) -> dict[str, list[str]]:
    """``"" -> top-level commands and flags``, ``"keys" -> its actions``, ``"keys list" -> its flags``."""
    table: dict[str, list[str]] = {"": [*_subparsers(root), *_flags(root)]}
    for name, command in _subparsers(root).items():
        actions = _subparsers(command)
        table[name] = [*actions, *_flags(command)]
        for action, parser in actions.items():
            table[f"{name} {action}"] = _flags(parser)
    return table


def bash_script(root: argparse.ArgumentParser) -> str:
    """A bash completion function for ``keysvc``."""
    cases = "\n".join(
        f'    "{key}") opts="{" ".join(values)}" ;;' for key, values in sorted(words(root).items())
    )
    return f"""# keysvc bash completion: source <(keysvc completion bash)
_keysvc() {{
  local cur path="" w i
  cur="${{COMP_WORDS[COMP_CWORD]}}"
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="${{COMP_WORDS[i]}}"
    case "$w" in -*) continue ;; esac
    if [ -z "$path" ]; then path="$w"; elif [ "${{path#* }}" = "$path" ]; then path="$path $w"; fi
  done
  local opts=""
  case "$path" in
{cases}
  esac
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}}
complete -o default -F _keysvc keysvc
"""


def run_completion(args: argparse.Namespace) -> int:
    """Print the completion script for ``args.shell``."""
    from keysvc.cli import build_parser  # noqa: PLC0415 - the parser is built by the entry point

    script = bash_script(build_parser())
    if args.shell == "zsh":
        header = "# keysvc zsh completion: source <(keysvc completion zsh)\n"
        script = header + "autoload -U +X bashcompinit && bashcompinit\n" + script
    emit(script.rstrip("\n"))
    return 0
