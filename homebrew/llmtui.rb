# Homebrew formula for llmtui. Until the first tagged release it builds from the main
# branch: `brew install --HEAD ./homebrew/llmtui.rb`. A release adds `url` and `sha256`
# and the `resource` blocks for every Python dependency, written by
# `brew update-python-resources llmtui` (the formula then installs with
# `virtualenv_install_with_resources`, offline from those resources).
# llama-cpp-python compiles llama.cpp during install (Metal on Apple silicon), which
# takes a few minutes.
class Llmtui < Formula
  include Language::Python::Virtualenv

  desc "Run language models locally from the terminal (Ollama-compatible)"
  homepage "https://github.com/llmtui/llmtui"
  license "Apache-2.0"
  head "https://github.com/llmtui/llmtui.git", branch: "main"

  depends_on "cmake" => :build
  depends_on "portaudio"
  depends_on "python@3.12"

  def install
    if resources.empty?
      # HEAD builds: the dependencies come from the package index at install time.
      venv = virtualenv_create(libexec, "python3.12")
      system libexec/"bin/python", "-m", "pip", "install", "--no-cache-dir",
             "#{buildpath}[llama,server,tui,voice,rag]"
      bin.install_symlink libexec/"bin/llm", libexec/"bin/llmtui"
    else
      venv = virtualenv_install_with_resources
    end
    bash_completion.install "completions/llm.bash" => "llm"
    zsh_completion.install "completions/_llm"
    fish_completion.install "completions/llm.fish"
    man1.install "man/llm.1"
    venv
  end

  service do
    run [opt_bin/"llm", "serve"]
    keep_alive true
    log_path var/"log/llmtui.log"
    error_log_path var/"log/llmtui.log"
  end

  test do
    ENV["LLMTUI_HOME"] = (testpath/"home").to_s
    expected = build.head? ? "llmtui " : "llmtui #{version}\n"
    assert_match expected, shell_output("#{bin}/llm --version")
    assert_match "smollm2:135m", shell_output("#{bin}/llm catalog --json")
    # A user error is one line on stderr with its own exit code, never a traceback.
    output = shell_output("#{bin}/llm show no-such-model:1b 2>&1", 3)
    assert_match "llm: error: model 'no-such-model:1b' not found", output
    # The daemon starts on demand and answers on its socket.
    assert_match "started", shell_output("#{bin}/llm daemon start 2>&1")
    assert_match "running", shell_output("#{bin}/llm daemon status")
    system bin/"llm", "daemon", "stop"
  end
end
