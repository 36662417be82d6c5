# The library scenarios with ActiveRecord 6.1 (Debian's ruby-activerecord, ruby-pg), one per run:
# activerecord_app.rb HOST PORT DBNAME SCENARIO. Prepared statements are on (the default), so
# values are bound ($1) and LIMIT too.
require "active_record"

HOST, PORT, DBNAME, SCENARIO = ARGV
ActiveRecord::Base.establish_connection(adapter: "postgresql", host: HOST, port: PORT.to_i,
                                        database: DBNAME, username: "postgres")

class Author < ActiveRecord::Base
  has_many :books, -> { order(:id) }
end

class Book < ActiveRecord::Base
  belongs_to :author
  has_many :reviews, -> { order(:id) }
end

class Review < ActiveRecord::Base
  belongs_to :book
end

class Tag < ActiveRecord::Base; end
class Setting < ActiveRecord::Base; end
class Post < ActiveRecord::Base; end

def belongs_to(books)
  books.each { |b| b.author.name }
end

def shelf(name)
  Book.where(shelf: name).order(:id)
end

case SCENARIO
when "belongs_to" then belongs_to(shelf("a"))
when "belongs_to_eager" then belongs_to(shelf("a").includes(:author))
when "has_many", "has_many_eager"
  authors = Author.where("id <= 8").order(:id)
  authors = authors.includes(:books) if SCENARIO == "has_many_eager"
  authors.each { |a| a.books.to_a }
when "nested", "nested_eager"
  authors = Author.where("id <= 6").order(:id)
  authors = authors.includes(books: :reviews) if SCENARIO == "nested_eager"
  authors.each { |a| a.books.each { |b| b.reviews.to_a } }
when "duplicate_lookup"
  6.times { Setting.find_by(key: "theme").value }
when "keyset"
  last = 0
  loop do
    page = Book.where("id > #{last}").order(:id).limit(5).to_a
    break if page.empty?
    last = page.last.id
  end
when "app_ids"
  Tag.order(:id).to_a
  [3, 9, 14, 20, 27, 33, 35, 37].each { |i| Book.find(i) }
when "repeated_fk" then belongs_to(shelf("b"))
when "ran_before"
  Author.find(7)
  belongs_to(shelf("a"))
when "literal_limit"
  # where("id = #{x}").first: the id inlined, the LIMIT bound
  shelf("a").each { |b| Author.where("id = #{b.author_id}").first }
when "insert_loop"
  30.times { |i| Post.create!(title: "post #{i}") }
when "idle_requests"
  books = shelf("a").to_a
  belongs_to(books[0, 3])
  sleep 0.5
  belongs_to(books[3, 3])
when "test_class"
  # a test class in one transaction; the runner names each test in application_name
  ActiveRecord::Base.transaction do
    ActiveRecord::Base.connection.execute("SET application_name = 'test_one'")
    Author.find(7)
    ActiveRecord::Base.connection.execute("SET application_name = 'test_two'")
    belongs_to(shelf("a"))
    raise ActiveRecord::Rollback
  end
else
  abort "unknown scenario #{SCENARIO}"
end
ActiveRecord::Base.connection.disconnect!
