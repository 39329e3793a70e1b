# fish completion for llm (llmtui); model names are read from the store, without Python.
function __llm_models
    set -l dir
    if set -q LLMTUI_MODELS
        set dir $LLMTUI_MODELS
    else if set -q LLMTUI_HOME
        set dir $LLMTUI_HOME/data/models
    else if set -q XDG_DATA_HOME
        set dir $XDG_DATA_HOME/llmtui/models
    else
        set dir $HOME/.local/share/llmtui/models
    end
    for f in $dir/manifests/*/*.json $dir/manifests/*/*/*.json
        set -l rel (string replace "$dir/manifests/" "" -- $f | string replace -r '\.json$' '')
        set -l tag (string split -r -m1 / -- $rel)
        echo "$tag[1]:$tag[2]"
    end
end

set -l cmds chat run describe prompt summarize translate ask pull import list show rm cp catalog search serve rpc-worker daemon ps load stop embed rag logs history plugins config completion transcribe speak listen voice setup doctor mcp launch convert quantize eval bench finetune train cache
complete -c llm -f
complete -c llm -n "not __fish_seen_subcommand_from $cmds" -a "$cmds"
complete -c llm -n "__fish_seen_subcommand_from run show rm cp load stop chat voice convert quantize bench finetune" -a "(__llm_models)"
complete -c llm -n "__fish_seen_subcommand_from eval; and not __fish_seen_subcommand_from perplexity compare" -a "perplexity compare"
complete -c llm -n "__fish_seen_subcommand_from perplexity compare" -a "(__llm_models)"
complete -c llm -n "__fish_seen_subcommand_from cache" -a "ls clear"
complete -c llm -n "__fish_seen_subcommand_from convert" -l to -a "onnx openvino gguf" -d "target format"
complete -c llm -s d -l data -F -d "data file or folder"
complete -c llm -l voice -l speech-model -a "(__llm_models)" -d "model"
complete -c llm -s m -l model -a "(__llm_models)" -d "model"
complete -c llm -n "__fish_seen_subcommand_from daemon" -a "start stop status logs"
complete -c llm -n "__fish_seen_subcommand_from config" -a "path show get set unset edit"
complete -c llm -n "__fish_seen_subcommand_from completion" -a "install show"
complete -c llm -n "__fish_seen_subcommand_from import describe transcribe" -F
complete -c llm -n "__fish_seen_subcommand_from rag" -a "add ls show rm query watch"
complete -c llm -n "__fish_seen_subcommand_from history" -a "list show export import rm"
complete -c llm -n "__fish_seen_subcommand_from logs" -a "path"
complete -c llm -n "__fish_seen_subcommand_from mcp" -a "list add rm test"
complete -c llm -n "__fish_seen_subcommand_from launch" -a "claude codex opencode aider"
complete -c llm -l functions -F -d "Python file of tool functions"
complete -c llm -l tools -a "fs shell fs,shell" -d "built-in tools"
complete -c llm -s i -l image -F -d "image file"
complete -c llm -l mmproj -F -d "projector file"
complete -c llmtui -w llm
