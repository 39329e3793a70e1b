# A stand-in for Homebrew's Formula DSL, enough to load homebrew/llmtui.rb and run its
# `test do` block against an installed `llm` (brew itself is not available here).
# Usage: ruby brew_stub.rb FORMULA BIN_DIR TESTPATH; prints a JSON summary.
require "json"
require "pathname"
require "open3"

module Language
  module Python
    module Virtualenv; end
  end
end

class Formula
  class << self
    attr_reader :info

    def dsl(key, value)
      (@info ||= Hash.new { |h, k| h[k] = [] })[key] << value
    end

    %i[desc homepage license url sha256].each { |m| define_method(m) { |v| dsl(m, v) } }
    def head(url, **opts) = dsl(:head, [url, opts])
    def depends_on(dep) = dsl(:depends_on, dep.is_a?(Hash) ? dep.keys.first : dep)
    def resource(name, &) = dsl(:resource, name)
    def service(&block) = dsl(:service, !block.nil?)
    def test(&block) = (@test_block = block)
    def test_block = @test_block
  end

  Build = Struct.new(:head) do
    def head? = head
    def stable? = !head
  end

  attr_reader :bin, :testpath

  def initialize(bin, testpath)
    @bin = Pathname(bin)
    @testpath = Pathname(testpath)
  end

  def build = Build.new(true)
  def version = "HEAD"

  def shell_output(cmd, result = 0)
    out, status = Open3.capture2(cmd)
    raise "#{cmd}: exit #{status.exitstatus}, expected #{result}\n#{out}" unless status.exitstatus == result

    out
  end

  def system(*args)
    Kernel.system(*args.map(&:to_s)) || raise("failed: #{args.join(" ")}")
  end

  def assert_match(pattern, text)
    ok = pattern.is_a?(Regexp) ? pattern.match?(text) : text.include?(pattern)
    raise "expected #{pattern.inspect} in #{text.inspect}" unless ok
  end

  def assert_equal(want, got)
    raise "expected #{want.inspect}, got #{got.inspect}" unless want == got
  end
end

formula, bin_dir, testpath = ARGV
load formula
klass = Object.const_get(:Llmtui)
Dir.chdir(testpath) { klass.new(bin_dir, testpath).instance_eval(&klass.test_block) }
puts JSON.generate(klass.info.merge(
  "methods" => klass.instance_methods(false).map(&:to_s),
  "includes_virtualenv" => klass.include?(Language::Python::Virtualenv),
))
