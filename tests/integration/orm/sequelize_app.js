// The library scenarios with Sequelize 6 (pinned by ../node/package-lock.json, on node-postgres),
// one per run: node sequelize_app.js HOST PORT DBNAME SCENARIO. Tables are Sequelize's defaults
// ("Authors", "Books" with "authorId"...).
'use strict';
const path = require('path');
const { Sequelize, DataTypes } = require(path.join(__dirname, '..', 'node', 'node_modules', 'sequelize'));

const [host, port, dbname, scenario] = process.argv.slice(2);
const sequelize = new Sequelize(dbname, 'postgres', null, {
  host, port: Number(port), dialect: 'postgres', logging: false,
  define: { timestamps: false },
});
const Author = sequelize.define('Author', { name: DataTypes.TEXT });
const Book = sequelize.define('Book', { title: DataTypes.TEXT, shelf: DataTypes.TEXT });
const Review = sequelize.define('Review', { stars: DataTypes.INTEGER });
const Tag = sequelize.define('Tag', { name: DataTypes.TEXT });
const Setting = sequelize.define('Setting', { key: DataTypes.TEXT, value: DataTypes.TEXT });
const Post = sequelize.define('Post', { title: DataTypes.TEXT });
Author.hasMany(Book);
Book.belongsTo(Author);
Book.hasMany(Review);
Review.belongsTo(Book);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const shelf = (name, opts = {}) => Book.findAll({ where: { shelf: name }, order: [['id', 'ASC']], ...opts });

async function belongsTo(books) {
  for (const b of books) {
    const a = b.Author || await b.getAuthor();
    void a.name;
  }
}

async function run() {
  switch (scenario) {
    case 'belongs_to': return belongsTo(await shelf('a'));
    case 'belongs_to_eager': return belongsTo(await shelf('a', { include: Author }));
    case 'has_many':
    case 'has_many_eager': {
      const eager = scenario === 'has_many_eager';
      const authors = await Author.findAll({ where: { id: { [Sequelize.Op.lte]: 8 } }, order: [['id', 'ASC']],
        ...(eager ? { include: Book } : {}) });
      for (const a of authors) if (!eager) await a.getBooks({ order: [['id', 'ASC']] });
      return;
    }
    case 'nested':
    case 'nested_eager': {
      const eager = scenario === 'nested_eager';
      const authors = await Author.findAll({ where: { id: { [Sequelize.Op.lte]: 6 } }, order: [['id', 'ASC']],
        ...(eager ? { include: { model: Book, include: Review } } : {}) });
      if (eager) return;
      for (const a of authors) {
        for (const b of await a.getBooks({ order: [['id', 'ASC']] })) await b.getReviews();
      }
      return;
    }
    case 'duplicate_lookup':
      for (let i = 0; i < 6; i++) await Setting.findOne({ where: { key: 'theme' } });
      return;
    case 'keyset': {
      let last = 0;
      for (;;) {
        const page = await Book.findAll({ where: { id: { [Sequelize.Op.gt]: last } }, order: [['id', 'ASC']], limit: 5 });
        if (page.length === 0) return;
        last = page[page.length - 1].id;
      }
    }
    case 'app_ids':
      await Tag.findAll({ order: [['id', 'ASC']] });
      for (const i of [3, 9, 14, 20, 27, 33, 35, 37]) await Book.findByPk(i);
      return;
    case 'repeated_fk': return belongsTo(await shelf('b'));
    case 'ran_before':
      await Author.findByPk(7);
      return belongsTo(await shelf('a'));
    case 'literal_limit':
      for (const b of await shelf('a')) {
        await Author.findOne({ where: Sequelize.literal('id = ' + Number(b.AuthorId)), order: [['id', 'ASC']] });
      }
      return;
    case 'insert_loop':
      for (let i = 0; i < 30; i++) await Post.create({ title: 'post ' + i });
      return;
    case 'idle_requests': {
      const books = await shelf('a');
      await belongsTo(books.slice(0, 3));
      await sleep(500);
      return belongsTo(books.slice(3, 6));
    }
    case 'test_class':
      // a test class in one transaction; the runner names each test in application_name
      return sequelize.transaction(async (t) => {
        await sequelize.query("SET application_name = 'test_one'", { transaction: t });
        await Author.findByPk(7, { transaction: t });
        await sequelize.query("SET application_name = 'test_two'", { transaction: t });
        for (const b of await shelf('a', { transaction: t })) await b.getAuthor({ transaction: t });
      });
    default:
      throw new Error('unknown scenario ' + scenario);
  }
}

run().then(() => sequelize.close()).catch((e) => { console.error(e); process.exit(1); });
