
_closeup_ops_completion() {
    local IFS=$'
'
    COMPREPLY=( $( env COMP_WORDS="${COMP_WORDS[*]}" \
                   COMP_CWORD=$COMP_CWORD \
                   _CLOSEUP_OPS_COMPLETE=complete_bash $1 ) )
    return 0
}

complete -o default -F _closeup_ops_completion closeup-ops

