
#compdef closeup-ops

_closeup_ops_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _CLOSEUP_OPS_COMPLETE=complete_zsh closeup-ops)
}

compdef _closeup_ops_completion closeup-ops

