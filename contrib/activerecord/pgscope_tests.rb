# Names each test for pgscope in ActiveRecord test suites (minitest, ActiveSupport::TestCase,
# RSpec): before each test, SET application_name to the test's name on ActiveRecord's
# connection, so pgscope counts statements and findings per test and `pgscope check
# --baseline-run` can say which test changed. No change to the application's code: require it
# from the test helper (test_helper.rb, spec_helper.rb):
#
#   require_relative "path/to/pgscope/contrib/activerecord/pgscope_tests"
#
# PostgreSQL keeps 63 bytes of an application_name: a longer test name is cut there.
require "active_record"

module PgscopeTests
  # The test's name as pgscope reports it: "BookTest#test_authors", or an RSpec example's id.
  def self.name_test(name)
    connection = ActiveRecord::Base.connection
    connection.execute("SET application_name = #{connection.quote(name.to_s[0, 63])}")
  rescue ActiveRecord::ConnectionNotEstablished
    nil # no database for this test
  end

  # Minitest (and ActiveSupport::TestCase, which is one).
  module Minitest
    def before_setup
      PgscopeTests.name_test("#{self.class.name}##{name}")
      super
    end
  end
end

::Minitest::Test.include(PgscopeTests::Minitest) if defined?(::Minitest::Test)
if defined?(::RSpec) && ::RSpec.respond_to?(:configure)
  ::RSpec.configure do |config|
    config.before(:each) { |example| PgscopeTests.name_test(example.id) }
  end
end
