# Homebrew formula for llmtui. Until the first tagged release it builds from the main
# branch: `brew install --HEAD ./homebrew/llmtui.rb`. A release adds `url` and `sha256`.
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
    venv = virtualenv_create(libexec, "python3.12")
    # Dependencies come from the package index at install time (wheels where available).
    system libexec/"bin/python", "-m", "pip", "install", "--no-cache-dir",
           "#{buildpath}[llama,server,tui,voice,rag]"
    bin.install_symlink libexec/"bin/llm", libexec/"bin/llmtui"
    bash_completion.install "completions/llm.bash" => "llm" if File.exist?("completions/llm.bash")
    zsh_completion.install "completions/_llm" if File.exist?("completions/_llm")
    fish_completion.install "completions/llm.fish" if File.exist?("completions/llm.fish")
    venv
  end

  test do
    ENV["LLMTUI_HOME"] = testpath/"home"
    assert_match "llmtui", shell_output("#{bin}/llm --version")
    assert_match "smollm2:135m", shell_output("#{bin}/llm catalog --json")
  end
end
