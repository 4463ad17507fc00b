package main

import (
	"fmt"
	"strings"
)

func runCompletion(e *env, args []string) error {
	fs := newFlags(e, "dynkey completion", "bash|zsh", `
Prints a shell completion script for the commands and subcommands. Load it
with:
  source <(dynkey completion bash)
  source <(dynkey completion zsh)     # zsh, after compinit`)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 1, 1, "shell (bash or zsh)"); err != nil {
		return err
	}
	if pos[0] != "bash" && pos[0] != "zsh" {
		return usagef("dynkey completion: unsupported shell %q (bash or zsh)", pos[0])
	}
	var cases strings.Builder
	for _, c := range commands {
		if c.sub != nil {
			fmt.Fprintf(&cases, "    %s) words=%q ;;\n", c.name, strings.Join(commandNames(c.sub), " "))
		}
	}
	script := `_dynkey() {
  local cur words
  cur="${COMP_WORDS[COMP_CWORD]}"
  if [ "$COMP_CWORD" -eq 1 ]; then
    words="` + strings.Join(commandNames(commands), " ") + ` help"
  elif [ "$COMP_CWORD" -eq 2 ]; then
    case "${COMP_WORDS[1]}" in
` + cases.String() + `    *) words="" ;;
    esac
  fi
  if [ -n "$words" ]; then
    COMPREPLY=( $(compgen -W "$words" -- "$cur") )
  else
    COMPREPLY=( $(compgen -f -- "$cur") )
  fi
}
complete -F _dynkey dynkey
`
	if pos[0] == "zsh" {
		script = "autoload -U +X bashcompinit && bashcompinit\n" + script
	}
	_, err = fmt.Fprint(e.stdout, script)
	return err
}
