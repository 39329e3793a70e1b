# bash completion for llm (llmtui). Model names come straight from the store's manifest
# folder: no Python starts, so completion is instant.
_llm_models_dir() {
    if [ -n "$LLMTUI_MODELS" ]; then echo "$LLMTUI_MODELS"
    elif [ -n "$LLMTUI_HOME" ]; then echo "$LLMTUI_HOME/data/models"
    else echo "${XDG_DATA_HOME:-$HOME/.local/share}/llmtui/models"; fi
}

_llm_models() {
    local dir f rel
    dir="$(_llm_models_dir)/manifests"
    [ -d "$dir" ] || return
    for f in "$dir"/*/*.json "$dir"/*/*/*.json; do
        [ -e "$f" ] || continue
        rel="${f#"$dir"/}"; rel="${rel%.json}"
        printf '%s\n' "${rel%/*}:${rel##*/}"
    done
}

_llm() {
    local cur prev cmd
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    cmd="${COMP_WORDS[1]}"
    local commands="chat run describe prompt summarize translate ask pull import list show rm cp catalog search serve rpc-worker daemon ps load stop embed rag logs history plugins config completion transcribe speak listen voice setup doctor mcp launch convert quantize eval bench finetune train cache"
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "$commands --help --version --no-daemon" -- "$cur"))
        return
    fi
    case "$prev" in
        -m|--model|--voice|--speech-model) COMPREPLY=($(compgen -W "$(_llm_models)" -- "$cur")); return ;;
        --format) COMPREPLY=($(compgen -f -W "json" -- "$cur")); return ;;
        -i|--image|--mmproj) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --length|-l) COMPREPLY=($(compgen -W "short medium long" -- "$cur")); return ;;
        --functions) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --data|-d|--file) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --to) COMPREPLY=($(compgen -W "onnx openvino gguf" -- "$cur")); return ;;
        --tools) COMPREPLY=($(compgen -W "fs shell fs,shell" -- "$cur")); return ;;
    esac
    case "$cmd" in
        run|show|rm|cp|load|stop|voice|convert|quantize|bench|finetune)
            COMPREPLY=($(compgen -W "$(_llm_models)" -- "$cur")) ;;
        import|describe|transcribe) COMPREPLY=($(compgen -f -- "$cur")) ;;
        daemon) COMPREPLY=($(compgen -W "start stop status logs" -- "$cur")) ;;
        config) COMPREPLY=($(compgen -W "path show get set unset edit" -- "$cur")) ;;
        completion) COMPREPLY=($(compgen -W "install show bash zsh fish" -- "$cur")) ;;
        rag) COMPREPLY=($(compgen -W "add ls show rm query watch" -- "$cur")) ;;
        history) COMPREPLY=($(compgen -W "list show export import rm" -- "$cur")) ;;
        mcp) COMPREPLY=($(compgen -W "list add rm test" -- "$cur")) ;;
        eval) if [ "$COMP_CWORD" -eq 2 ]; then COMPREPLY=($(compgen -W "perplexity compare" -- "$cur"))
              else COMPREPLY=($(compgen -W "$(_llm_models)" -- "$cur")); fi ;;
        cache) COMPREPLY=($(compgen -W "ls clear" -- "$cur")) ;;
        launch) COMPREPLY=($(compgen -W "claude codex opencode aider --config --model --port" -- "$cur")) ;;
        logs) COMPREPLY=($(compgen -W "path --count --current --cid --model --query --response --json" -- "$cur")) ;;
        chat) COMPREPLY=($(compgen -W "$(_llm_models)" -- "$cur")) ;;
    esac
}
# Colons are part of model names: keep them in the word being completed.
COMP_WORDBREAKS=${COMP_WORDBREAKS//:}
complete -F _llm llm llmtui
