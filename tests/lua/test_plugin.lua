--[[
  Unit tests of plugin/lowlight_enhance.lua under plain lua5.4 with a fake darktable table.
  Run: lua5.4 tests/lua/test_plugin.lua [--list | TEST_NAME...]   (no name: all tests)
  Exit status 0 iff every test passed. Real shells, real files and real (fake) client processes.
]]

local here = (arg[0]:match("^(.*)/[^/]*$") or ".")
package.path = here .. "/?.lua;" .. package.path
local fake = require "fake_darktable"
local PLUGIN = here .. "/../../plugin/lowlight_enhance.lua"
local FAKE_CLIENT = here .. "/fake_client.lua"

local tests, names = {}, {}
local function test(name, fn)
  tests[name] = fn
  names[#names + 1] = name
end

-- ---------------------------------------------------------------------------
-- helpers
-- ---------------------------------------------------------------------------

local function eq(actual, expected, what)
  if actual ~= expected then
    error(string.format("%s: expected %q, got %q", what or "value", tostring(expected), tostring(actual)), 2)
  end
end

local function contains(haystack, needle, what)
  if not tostring(haystack):find(needle, 1, true) then
    error(string.format("%s: %q does not contain %q", what or "text", tostring(haystack), needle), 2)
  end
end

local function find_message(list, needle)
  for _, msg in ipairs(list) do
    if msg:find(needle, 1, true) then
      return msg
    end
  end
  error(string.format("no message contains %q; messages: %s", needle, table.concat(list, " | ")), 2)
end

local function q(text)
  return "'" .. text:gsub("'", "'\\''") .. "'"
end

local function capture(command)
  local p = assert(io.popen(command, "r"))
  local out = p:read("a")
  p:close()
  return out
end

local tmp_dirs = {}
local function tmpdir()
  local dir = capture("mktemp -d"):gsub("%s+$", "")
  tmp_dirs[#tmp_dirs + 1] = dir
  return dir
end

local function write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

local function exists(path)
  return read_file(path) ~= nil
end

-- a client command running fake_client.lua in `mode`; returns its path and its record file
local function fake_client(dir, mode)
  local record = dir .. "/record"
  local path = dir .. "/fake lr-bridge"
  write_file(path, string.format("#!/bin/sh\nexec lua5.4 %s %s %s \"$@\"\n", q(FAKE_CLIENT), q(mode), q(record)))
  os.execute("chmod +x " .. q(path))
  return path, record
end

-- every progress value set on any of the batch's jobs (a new job for each label), in order
local function all_percents(dt)
  local percents = {}
  for _, job in ipairs(dt.jobs) do
    for _, value in ipairs(job.percents) do
      percents[#percents + 1] = value
    end
  end
  return percents
end

local function basename(path)
  return path:match("([^/]*)$")
end

-- the argument lists of every run of a fake client, in order
local function recorded_runs(record)
  local runs = {}
  for run in (read_file(record) or ""):gmatch("(.-)%z%z") do
    local argv = {}
    for a in (run .. "\0"):gmatch("(.-)%z") do
      argv[#argv + 1] = a
    end
    runs[#runs + 1] = argv
  end
  return runs
end

-- how many temporary files os.tmpname() made exist (the plugin's run files live there)
local function count_run_files()
  local probe = os.tmpname()
  os.remove(probe)
  local folder = probe:match("^(.*)/") or "/tmp"
  return tonumber(capture("ls -A " .. q(folder) .. " | grep -c '^lua_' || true"):match("%d+"))
end

local function index_of(list, value)
  for i, v in ipairs(list) do
    if v == value then return i end
  end
end

-- a loaded plugin with the client preference set; returns dt, script_data.lowlight
local function plugin_with_client(client, prefs)
  local dt = fake.new()
  local data = fake.load_plugin(dt, PLUGIN)
  dt.preferences.write("lowlight_enhance", "client", "string", client)
  for key, value in pairs(prefs or {}) do
    dt.prefs["lowlight_enhance/" .. key] = value
  end
  return dt, data.lowlight
end

-- a client that runs for 10 s unless it gets SIGTERM: then it prints a cancelled done, leaves
-- a marker file and exits 130 (as lr-bridge does); returns its path and the marker's
local function slow_client(dir)
  local marker = dir .. "/got TERM"
  local client = dir .. "/slow client"
  write_file(client, table.concat({
    "#!/bin/sh",
    "trap 'echo \"{\\\"event\\\":\\\"done\\\",\\\"job\\\":\\\"j\\\",\\\"ok\\\":0,\\\"failed\\\":0,\\\"cancelled\\\":true}\"; " ..
      "touch " .. q(marker):gsub("'", "'\\''") .. "; exit 130' TERM",
    "echo '{\"event\":\"accepted\",\"job\":\"j\",\"files\":1}'",
    "i=0",
    "while [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done",
    "exit 0",
  }, "\n") .. "\n")
  os.execute("chmod +x " .. q(client))
  return client, marker
end

local AWKWARD_FOLDER = "night shots 'Ünïcødé' 夜"

-- two source images in a folder whose name has spaces, quotes and non-ASCII characters
local function awkward_sources(dt, dir)
  local folder = dir .. "/" .. AWKWARD_FOLDER
  os.execute("mkdir -p " .. q(folder))
  local tag = { name = "places|Zürich" }
  local internal = { name = "darktable|format|dng" }
  local first = fake.new_image(dt, folder, "it's dark 🌙.dng", {
    rating = 4, red = true, purple = true, title = "Nuit", description = "street at night",
    tags = { tag, internal },
  })
  local second = fake.new_image(dt, folder, "plain.dng", { rating = 1, green = true })
  return { first, second }, folder
end

-- ---------------------------------------------------------------------------
-- pure helpers
-- ---------------------------------------------------------------------------

test("shell_quote_round_trips_through_sh", function()
  local dt = fake.new()
  local M = fake.load_plugin(dt, PLUGIN).lowlight
  for _, text in ipairs({ "plain", "with space", "it's", "''", "a\"b\\c$HOME`x`", "Ünïcødé 夜 🌙",
    "new\nline", "-n", "" }) do
    eq(capture("printf '%s' " .. M.shell_quote(text)), text, "sh sees")
  end
  eq(M.shell_quote("it's"), "'it'\\''s'", "quoted form")
end)

test("json_decode_values_and_escapes", function()
  local M = fake.load_plugin(fake.new(), PLUGIN).lowlight
  local v = assert(M.json_decode(
    '{"a": "x\\"y\\\\z\\/\\n\\t", "n": -12.5e2, "i": 3, "t": true, "f": false, "z": null, ' ..
    '"arr": [1, "two", [3]], "o": {"k": "v"}, "u": "\\u00fc\\u591c\\ud83c\\udf19", "raw": "夜"}'))
  eq(v.a, 'x"y\\z/\n\t', "escapes")
  eq(v.n, -1250, "number")
  eq(v.i, 3, "integer")
  eq(v.t, true, "true")
  eq(v.f, false, "false")
  eq(v.z, M.null, "null")
  eq(#v.arr, 3, "array length")
  eq(v.arr[2], "two", "array item")
  eq(v.arr[3][1], 3, "nested array")
  eq(v.o.k, "v", "nested object")
  eq(v.u, "ü夜🌙", "\\u escapes incl. a surrogate pair")
  eq(v.raw, "夜", "raw UTF-8")
  -- Python's surrogateescape: a file-name byte that is not UTF-8 comes back as that byte
  eq(assert(M.json_decode('"a\\udcffb"')), "a\255b", "surrogateescape byte")
  eq(assert(M.json_decode("  []  "))[1], nil, "empty array")
end)

test("json_decode_rejects_malformed_text", function()
  local M = fake.load_plugin(fake.new(), PLUGIN).lowlight
  for _, text in ipairs({ "", "{", '{"a": 1', '{"a" 1}', '{"a": 1,}', '"open', '{"a": 1} x', "nul",
    '{"a": "\\q"}', '{"a": "\\u12"}', "{a: 1}", "[1 2]", '"tab\there"' }) do
    local value, err = M.json_decode(text)
    eq(value, nil, "decoding " .. text)
    assert(type(err) == "string" and err:find("character"), "message for " .. text .. ": " .. tostring(err))
  end
end)

test("parse_event_line_accepts_the_contract", function()
  local M = fake.load_plugin(fake.new(), PLUGIN).lowlight
  local lines = {
    '{"event":"accepted","job":"j1","files":2}',
    '{"event":"progress","job":"j1","file":"/p/a.dng","index":0,"total":2,"fraction":0.25}',
    '{"event":"result","job":"j1","file":"/p/a.dng","output":"/p/a_lowlight.dng","ev":5.5,"seconds":1.2}',
    '{"event":"error","job":null,"file":null,"code":"unreachable","message":"no daemon"}',
    '{"event":"done","job":"j1","ok":1,"failed":1,"cancelled":false}',
  }
  local events = {}
  for _, line in ipairs(lines) do
    events[#events + 1] = assert(M.parse_event_line(line))
  end
  eq(events[1].files, 2, "accepted files")
  eq(events[2].fraction, 0.25, "progress fraction")
  eq(events[2].index, 0, "progress index")
  eq(events[3].output, "/p/a_lowlight.dng", "result output")
  eq(events[3].ev, 5.5, "result ev")
  eq(events[4].file, nil, "null file becomes nil")
  eq(events[4].job, nil, "null job becomes nil")
  eq(events[4].code, "unreachable", "error code")
  eq(events[5].cancelled, false, "done cancelled")
end)

test("parse_event_line_rejects_other_lines", function()
  local M = fake.load_plugin(fake.new(), PLUGIN).lowlight
  local cases = {
    { "loading model...", "character" },
    { '{"job":"j"}', "not an event" },
    { '["event"]', "not an event" },
    { '{"event":"hello"}', "unknown event 'hello'" },
    { '{"event":"result","job":"j","file":"/a"}', "result event without a string 'output'" },
    { '{"event":"progress","job":"j","file":"/a","index":"0","total":1,"fraction":0}', "number 'index'" },
    { '{"event":"done","job":"j","ok":1,"failed":0,"cancelled":null}', "boolean 'cancelled'" },
  }
  for _, case in ipairs(cases) do
    local event, err = M.parse_event_line(case[1])
    eq(event, nil, case[1])
    contains(err, case[2], "reason for " .. case[1])
  end
end)

test("parse_ev_accepts_auto_and_stops", function()
  local M = fake.load_plugin(fake.new(), PLUGIN).lowlight
  eq(M.parse_ev("auto"), "auto", "auto")
  eq(M.parse_ev(" AUTO "), "auto", "auto any case")
  eq(M.parse_ev(""), "auto", "empty")
  eq(M.parse_ev(" 5.5 "), "5.5", "number")
  eq(M.parse_ev("-1"), "-1", "negative")
  eq(M.parse_ev("6"), "6", "integer")
  eq(M.parse_ev("12"), "12", "the engine's highest")
  eq(M.parse_ev("-4"), "-4", "the engine's lowest")
  for _, bad in ipairs({ "bright", "12.5", "14", "-5", "nan", "5 EV" }) do
    local value, err = M.parse_ev(bad)
    eq(value, nil, "ev " .. bad)
    contains(err, "'" .. bad .. "'", "message names the value")
    contains(err, "from -4 to 12", "message gives the range")
  end
end)

test("expand_output_folder_patterns", function()
  local M = fake.load_plugin(fake.new(), PLUGIN).lowlight
  eq(M.expand_output_folder("", "/photos/a b", "/home/u"), nil, "empty = beside the source")
  eq(M.expand_output_folder("   ", "/photos/a b", "/home/u"), nil, "blank = beside the source")
  eq(M.expand_output_folder("$(FILE_FOLDER)/lowlight", "/photos/a b", "/home/u"), "/photos/a b/lowlight", "file folder")
  eq(M.expand_output_folder("$(HOME)/out/", "/p", "/home/u"), "/home/u/out", "home, trailing slash")
  eq(M.expand_output_folder("~/out", "/p", "/home/u"), "/home/u/out", "tilde")
  eq(M.expand_output_folder("/abs%d", "/p%", "/h"), "/abs%d", "percent signs are literal")
  eq(M.expand_output_folder("$(FILE_FOLDER)", "/it's 100%", "/h"), "/it's 100%", "no pattern magic in the folder")
  eq(M.expand_output_folder("/", "/p", "/h"), "/", "root stays root")
end)

test("build_command_keeps_every_argument_intact", function()
  local dir = tmpdir()
  local M = fake.load_plugin(fake.new(), PLUGIN).lowlight
  local client = dir .. "/my client's"
  write_file(client, "#!/bin/sh\nprintf '%s\\n' \"$@\"\n")
  os.execute("chmod +x " .. q(client))
  local files = { "/ph/it's dark 🌙.dng", "/ph/a  b/$(x) `y`.dng" }
  local settings = { client = client, format = "TIFF", linear = true, model = "quality", ev = "6.5", strength = 0.75,
    endpoint = "tcp://gpu box:5599" }
  local args = {}
  for line in capture(M.build_command(settings, files, "/out dir/Ü")):gmatch("[^\n]+") do
    args[#args + 1] = line
  end
  local expected = { "enhance", "--json", "--format", "tiff", "--ev", "6.5", "--strength", "0.75",
    "--linear", "--model", "quality", "--output-dir", "/out dir/Ü", "--endpoint", "tcp://gpu box:5599", files[1], files[2] }
  eq(#args, #expected, "argument count (" .. table.concat(args, "|") .. ")")
  for i, want in ipairs(expected) do
    eq(args[i], want, "argument " .. i)
  end
  local plain = M.build_command({ client = "lr-bridge", format = "DNG", linear = true, model = "auto", ev = "auto",
    strength = 1, endpoint = "" }, { "/a.dng" }, nil)
  eq(plain, "'lr-bridge' enhance --json --format 'dng' --ev 'auto' --strength '1' '/a.dng'",
    "defaults: no --linear but for TIFF, no --model for auto (the daemon's choice)")
end)

test("next_lines_waits_for_complete_lines", function()
  local dir = tmpdir()
  local M = fake.load_plugin(fake.new(), PLUGIN).lowlight
  local run = { out = dir .. "/out", offset = 0, partial = "" }
  eq(#M.next_lines(run), 0, "no file yet")
  local f = assert(io.open(run.out, "wb"))
  f:write('{"a":1}\n{"b":')
  f:flush()
  local lines = M.next_lines(run)
  eq(#lines, 1, "one complete line")
  eq(lines[1], '{"a":1}', "first line")
  f:write('2}\n\n')
  f:close()
  lines = M.next_lines(run)
  eq(#lines, 2, "the completed line and an empty one")
  eq(lines[1], '{"b":2}', "completed line")
  eq(#M.next_lines(run), 0, "nothing new")
end)

test("exit_message_plain_words", function()
  local M = fake.load_plugin(fake.new(), PLUGIN).lowlight
  eq(M.exit_message(1, "", "lr-bridge"), nil, "per-file errors said it")
  eq(M.exit_message(130, "", "lr-bridge"), nil, "cancel")
  eq(M.exit_message(3, "connection refused", "lr-bridge"), "no daemon: connection refused")
  eq(M.exit_message(3, "lr-bridge: cannot connect", "/x/lr-bridge"), "no daemon: cannot connect", "the client's prefix goes")
  contains(M.exit_message(127, "", "/opt/lr-bridge"), "client /opt/lr-bridge not found")
  contains(M.exit_message(126, "", "/opt/x"), "not executable")
  contains(M.exit_message(2, "usage: lr-bridge ...", "lr-bridge"), "failed (exit status 2): usage: lr-bridge ...")
end)

-- ---------------------------------------------------------------------------
-- registration, preferences, version check
-- ---------------------------------------------------------------------------

test("registers_button_shortcut_and_destroys_them", function()
  local dt = fake.new({ 9, 0, 0 })
  local data = fake.load_plugin(dt, PLUGIN)
  eq(data.metadata.name, "enhance low light", "metadata name")
  for _, key in ipairs({ "purpose", "author", "help" }) do
    assert(type(data.metadata[key]) == "string" and #data.metadata[key] > 10, "metadata " .. key)
  end
  local action = assert(dt.actions.lowlight_enhance, "button registered")
  eq(action.label, "enhance low light", "button label")
  assert(#action.tooltip > 10, "button tooltip")
  local shortcut = assert(dt.events["lowlight_enhance/shortcut"], "shortcut registered")
  eq(shortcut.description, "enhance low light", "shortcut name")
  data.destroy()
  eq(dt.actions.lowlight_enhance, nil, "button removed")
  eq(dt.events["lowlight_enhance/shortcut"], nil, "shortcut removed")
end)

test("newer_api_5x_is_accepted", function()
  local dt = fake.new({ 9, 4, 0 })
  fake.load_plugin(dt, PLUGIN)
  assert(dt.actions.lowlight_enhance, "button registered on API 9.4")
  eq(#dt.errors, 0, "no error")
end)

test("old_api_is_refused_with_a_clear_message", function()
  local dt = fake.new({ 8, 2, 1 })
  local data = fake.load_plugin(dt, PLUGIN)
  eq(next(dt.actions), nil, "no button")
  eq(next(dt.events), nil, "no shortcut")
  eq(#dt.registered_prefs, 0, "no preferences")
  local msg = find_message(dt.messages, "needs darktable 4.2+")
  contains(msg, "Lua API 9.0.0", "needed API")
  contains(msg, "8.2.1", "running API")
  find_message(dt.errors, "needs darktable 4.2")
  data.destroy() -- script_manager may still switch it off: nothing to undo, no error
  assert(data.metadata.name, "metadata still there for the script manager")
end)

test("preference_defaults", function()
  local dt = fake.new()
  local M = fake.load_plugin(dt, PLUGIN).lowlight
  local kinds = {}
  for _, pref in ipairs(dt.registered_prefs) do
    eq(pref.script, "lowlight_enhance", "preference script")
    kinds[pref.name] = pref
  end
  eq(kinds.client.kind, "string", "client kind")
  eq(kinds.format.kind, "enum", "format kind")
  eq(table.concat(kinds.format.extra, ","), "DNG,TIFF,JPEG", "format choices")
  eq(kinds.strength.kind, "float", "strength kind")
  eq(table.concat(kinds.strength.extra, ","), "0.0,1.0,0.05", "strength range")
  eq(kinds.group_leader.kind, "bool", "leader kind")
  eq(kinds.linear.kind, "bool", "linear kind")
  eq(kinds.model.kind, "enum", "model kind")
  eq(table.concat(kinds.model.extra, ","), "auto,fast,fast-licence-clean,quality", "model choices")
  local s = assert(M.read_settings())
  eq(s.client, "lr-bridge", "client: none recorded beside the script, so the one on PATH")
  eq(s.again, false, "originals that already have a result are skipped")
  eq(s.format, "DNG", "format")
  eq(s.ev, "auto", "ev")
  eq(s.strength, 1.0, "strength")
  eq(s.output_folder, "", "output folder: beside the source")
  eq(s.group_leader, true, "the result leads its group, so it shows when grouping is on")
  eq(s.endpoint, "", "endpoint: local daemon")
  eq(s.linear, false, "linear")
  eq(s.model, "auto", "model")
end)

test("preferences_read_in_a_natural_order", function()
  local dt = fake.new()
  local M = fake.load_plugin(dt, PLUGIN).lowlight
  -- darktable shows a script's Lua options in the reverse order of registration
  local shown = {}
  for i = #dt.registered_prefs, 1, -1 do
    shown[#shown + 1] = dt.registered_prefs[i].name
  end
  eq(table.concat(shown, ","), "format,linear,ev,strength,model,output_folder,group_leader,again,client,endpoint",
    "order in preferences > lua options")
  eq(#M.PREFERENCES, #dt.registered_prefs, "every preference registered once")
end)

test("read_settings_cleans_and_validates", function()
  local dt = fake.new()
  local M = fake.load_plugin(dt, PLUGIN).lowlight
  dt.preferences.write("lowlight_enhance", "client", "string", "  ~/bin/lr-bridge ")
  dt.preferences.write("lowlight_enhance", "endpoint", "string", " tcp://h:1 ")
  dt.preferences.write("lowlight_enhance", "ev", "string", " 4 ")
  local s = assert(M.read_settings())
  eq(s.client, (os.getenv("HOME") or "") .. "/bin/lr-bridge", "tilde expanded")
  eq(s.endpoint, "tcp://h:1", "endpoint trimmed")
  eq(s.ev, "4", "ev")
  dt.preferences.write("lowlight_enhance", "client", "string", "   ")
  dt.preferences.write("lowlight_enhance", "ev", "string", "lots")
  local bad, err = M.read_settings()
  eq(bad, nil, "bad ev refused")
  contains(err, "exposure must be 'auto' or a number", "message")
end)

-- ---------------------------------------------------------------------------
-- batches with a fake client process
-- ---------------------------------------------------------------------------

test("enhance_imports_groups_and_copies_metadata", function()
  local dir = tmpdir()
  local client, record = fake_client(dir, "ok")
  local dt, M = plugin_with_client(client, { group_leader = true, format = "TIFF", strength = 0.5 })
  local sources, folder = awkward_sources(dt, dir)
  dt.gui.action_images = sources
  local run_files_before = count_run_files()
  dt.events["lowlight_enhance/shortcut"].callback("shortcut", "enhance low light")

  local runs = recorded_runs(record)
  eq(#runs, 1, "one client run")
  local argv = runs[1]
  eq(argv[1], "enhance", "subcommand")
  eq(argv[index_of(argv, "--format") + 1], "tiff", "format")
  eq(argv[index_of(argv, "--strength") + 1], "0.5", "strength")
  eq(argv[index_of(argv, "--ev") + 1], "auto", "ev")
  eq(index_of(argv, "--output-dir"), nil, "beside the source")
  eq(argv[#argv - 1], folder .. "/it's dark 🌙.dng", "awkward file name intact")
  eq(argv[#argv], folder .. "/plain.dng", "second file")

  eq(#dt.imports, 2, "both results imported")
  local result = dt.imports[1]
  eq(result.path, folder, "result beside the source")
  eq(result.filename, "it's dark 🌙_lowlight.tiff", "result name")
  eq(result.grouped_with, sources[1], "grouped with its source")
  eq(result.leader, true, "made group leader")
  eq(result.rating, 4, "rating copied")
  eq(result.red, true, "red copied")
  eq(result.purple, true, "purple copied")
  eq(result.green, false, "green copied")
  eq(result.title, "Nuit", "title copied")
  eq(result.description, "street at night", "description copied")
  eq(#result.tags, 1, "user tags only")
  eq(result.tags[1].name, "places|Zürich", "tag copied")
  eq(dt.imports[2].grouped_with, sources[2], "second grouped")
  eq(dt.imports[2].green, true, "second labels")

  eq(sources[1].leader, false, "source untouched")
  eq(#sources[1].tags, 2, "source tags untouched")
  local percents = all_percents(dt)
  for _, job in ipairs(dt.jobs) do
    eq(job.valid, false, "every job ended")
  end
  eq(percents[#percents], 1, "progress reached 1")
  for i = 2, #percents do
    assert(percents[i] >= percents[i - 1], "progress never goes back")
  end
  eq(percents[1], 0, "progress starts at 0")
  local summary = find_message(dt.messages, "low light: 2 of 2 photos enhanced")
  eq(summary, "low light: 2 of 2 photos enhanced, in " .. basename(folder), "the place is the folder's name")
  contains(find_message(dt.log, "report: "), dt.configuration.config_dir .. "/lowlight_enhance.log", "report logged")
  eq(#dt.selections, 1, "one selection change")
  eq(dt.selections[1][1], dt.imports[1], "first result selected")
  eq(dt.selections[1][2], dt.imports[2], "second result selected")
  eq(#dt.selections[1], 2, "only the results are selected")
  local report = read_file(dt.configuration.config_dir .. "/lowlight_enhance.log")
  contains(report, "low light: 2 of 2 photos enhanced, in " .. folder .. "\n", "the report starts with the summary")
  contains(report, "ok      " .. folder .. "/it's dark 🌙.dng -> " .. folder .. "/it's dark 🌙_lowlight.tiff", "first line")
  contains(report, "ok      " .. folder .. "/plain.dng -> " .. folder .. "/plain_lowlight.tiff", "second line")
  eq(M.is_busy(), false, "not busy afterwards")
  eq(count_run_files(), run_files_before, "the client's temporary files are removed")
end)

test("button_runs_the_same_batch_and_output_folder_pattern", function()
  local dir = tmpdir()
  local client, record = fake_client(dir, "ok")
  local dt, M = plugin_with_client(client, { output_folder = "$(FILE_FOLDER)/low light", endpoint = "ipc:///tmp/x y" })
  local a = fake.new_image(dt, dir .. "/A", "a.dng")
  local b = fake.new_image(dt, dir .. "/B ü", "b.dng")
  local c = fake.new_image(dt, dir .. "/A", "c.dng")
  dt.actions.lowlight_enhance.callback("clicked", { a, b, c })
  local runs = recorded_runs(record)
  eq(#runs, 2, "one run per output folder")
  eq(runs[1][index_of(runs[1], "--output-dir") + 1], dir .. "/A/low light", "first folder")
  eq(runs[1][index_of(runs[1], "--endpoint") + 1], "ipc:///tmp/x y", "endpoint passed")
  eq(runs[1][#runs[1]], dir .. "/A/c.dng", "first run takes both A files")
  eq(runs[2][index_of(runs[2], "--output-dir") + 1], dir .. "/B ü/low light", "second folder")
  eq(#dt.imports, 3, "three imports")
  eq(dt.imports[3].path, dir .. "/B ü/low light", "imported from the output folder")
  eq(dt.imports[3].grouped_with, b, "grouped across folders")
  eq(dt.imports[1].leader, true, "leader by default")
  local percents = all_percents(dt)
  eq(percents[#percents], 1, "progress spans both runs")
  eq(find_message(dt.messages, "3 of 3 photos enhanced"), "low light: 3 of 3 photos enhanced, in 2 folders")
end)

test("a_failed_file_is_reported_and_the_others_continue", function()
  local dir = tmpdir()
  local client = fake_client(dir, "fail_second")
  local dt, M = plugin_with_client(client)
  local sources = awkward_sources(dt, dir)
  local third = fake.new_image(dt, sources[1].path, "third.dng")
  dt.actions.lowlight_enhance.callback("clicked", { sources[1], sources[2], third })
  eq(#dt.imports, 2, "first and third imported")
  eq(dt.imports[2].grouped_with, third, "third grouped")
  local msg = find_message(dt.messages, "low light: plain.dng: ")
  eq(msg, "low light: plain.dng: not a raw file LibRaw can read", "base name and reason, no path")
  find_message(dt.errors, "plain.dng: not a raw file")
  find_message(dt.messages, "low light: 2 of 3 photos enhanced, 1 failed, in ")
  local report = read_file(M.report_path())
  contains(report, "failed  " .. sources[2].path .. "/plain.dng: ", "the failure is kept in the report")
  contains(report, "not a raw file LibRaw can read", "with its reason")
end)

test("own_results_and_non_raw_images_are_skipped_and_counted", function()
  local dir = tmpdir()
  local client, record = fake_client(dir, "ok")
  local dt, M = plugin_with_client(client)
  local source = fake.new_image(dt, dir, "night.dng")
  local selection = {
    fake.new_image(dt, dir, "night_lowlight.dng"),
    source,
    fake.new_image(dt, dir, "night_lowlight_2.tif"),
    fake.new_image(dt, dir, "phone.jpg"),
    fake.new_image(dt, dir, "lowlight_party.dng"), -- only the suffix marks a result
    fake.new_image(dt, dir, "scan.TIFF"),
    fake.new_image(dt, dir, "night.CR3"),
  }
  M.on_button("clicked", selection)
  local runs = recorded_runs(record)
  eq(#runs, 1, "one client run")
  eq(runs[1][#runs[1] - 2], dir .. "/night.dng", "the raw source is sent")
  eq(runs[1][#runs[1] - 1], dir .. "/lowlight_party.dng", "a name that merely contains lowlight is sent")
  eq(runs[1][#runs[1]], dir .. "/night.CR3", "any other raw is sent")
  eq(index_of(runs[1], dir .. "/night_lowlight.dng"), nil, "a result is not sent")
  find_message(dt.messages, "low light: 3 of 3 photos enhanced, 4 skipped, in ")
  local report = read_file(M.report_path())
  contains(report, "skipped " .. dir .. "/night_lowlight.dng: a low light result whose original", "result skipped")
  contains(report, "skipped " .. dir .. "/night_lowlight_2.tif: a low light result whose original", "numbered result")
  contains(report, "skipped " .. dir .. "/phone.jpg: not a raw file", "JPEG skipped")
  contains(report, "skipped " .. dir .. "/scan.TIFF: not a raw file", "TIFF skipped, any case")
end)

test("a_selection_of_results_only_starts_nothing", function()
  local dir = tmpdir()
  local client, record = fake_client(dir, "ok")
  local dt, M = plugin_with_client(client)
  M.on_shortcut("shortcut", "enhance low light") -- nothing selected
  find_message(dt.messages, "select the photos to enhance first")
  dt.gui.action_images = { fake.new_image(dt, dir, "a_lowlight.dng"), fake.new_image(dt, dir, "b_lowlight_1.jpg") }
  M.on_shortcut("shortcut", "enhance low light")
  eq(#recorded_runs(record), 0, "the client never ran")
  eq(#dt.jobs, 0, "no background job")
  eq(#dt.selections, 0, "the selection is left alone")
  local summary = find_message(dt.messages, "nothing to enhance")
  eq(utf8.len(summary), 80, "cut to fit a toast")
  contains(summary, "low light: nothing to enhance, 2 skipped: a low light result whose original is", "one reason")
  contains(read_file(M.report_path()), "skipped " .. dir .. "/b_lowlight_1.jpg: a low light result", "report")
end)

test("an_unwritable_report_is_said_and_the_batch_still_ends", function()
  local dir = tmpdir()
  local dt, M = plugin_with_client((fake_client(dir, "ok")))
  dt.configuration.config_dir = dir .. "/no such folder"
  M.on_button("clicked", { fake.new_image(dt, dir, "a.dng") })
  eq(#dt.imports, 1, "the result is imported")
  find_message(dt.messages, "low light: cannot write the report lowlight_enhance.log")
  contains(find_message(dt.errors, "no such folder"), dir .. "/no such folder/lowlight_enhance.log", "logs its path")
  eq(find_message(dt.messages, "1 of 1 photo enhanced"), "low light: 1 of 1 photo enhanced, in " .. basename(dir))
end)

test("destroy_stops_a_running_batch_and_unregisters", function()
  local dir = tmpdir()
  local dt = fake.new()
  local data = fake.load_plugin(dt, PLUGIN)
  local M = data.lowlight
  local client, marker = slow_client(dir)
  dt.preferences.write("lowlight_enhance", "client", "string", client)
  local polls = 0
  dt.sleep_hook = function()
    polls = polls + 1
    if polls == 3 then
      data.destroy() -- script_manager switches the plugin off mid-batch
    end
  end
  local summary = M.enhance_images({ fake.new_image(dt, dir, "a.dng"), fake.new_image(dt, dir, "b.dng") })
  eq(summary.cancelled, true, "the batch was cancelled")
  assert(exists(marker), "the client got SIGTERM")
  eq(M.is_busy(), false, "not busy")
  eq(dt.actions.lowlight_enhance, nil, "button removed")
  eq(dt.events["lowlight_enhance/shortcut"], nil, "shortcut removed")
end)

test("a_missing_result_file_is_not_imported", function()
  local dir = tmpdir()
  local dt = plugin_with_client((fake_client(dir, "missing_output")))
  local image = fake.new_image(dt, dir, "a.dng")
  dt.actions.lowlight_enhance.callback("clicked", { image })
  eq(#dt.imports, 0, "nothing imported")
  eq(find_message(dt.messages, "does not exist"), "low light: a.dng: the result a_lowlight.dng does not exist")
  eq(find_message(dt.messages, "1 failed"), "low light: 0 of 1 photo enhanced, 1 failed")
end)

test("missing_client_is_explained", function()
  local dir = tmpdir()
  local dt, M = plugin_with_client(dir .. "/no such lr-bridge")
  local image = fake.new_image(dt, dir, "a.dng")
  dt.actions.lowlight_enhance.callback("clicked", { image })
  eq(#dt.messages, 1, "one message: the summary holds the reason")
  eq(dt.messages[1], "low light: 1 not processed: client no such lr-bridge not found: set its path in…",
    "the client by its base name")
  contains(find_message(dt.errors, "not found"), dir .. "/no such lr-bridge", "the log has its path")
  contains(read_file(M.report_path()), "not processed " .. dir .. "/a.dng", "the report counts it")
end)

test("unreachable_daemon_is_told_once_and_stops_the_batch", function()
  local dir = tmpdir()
  local client, record = fake_client(dir, "unreachable")
  local dt, M = plugin_with_client(client, { output_folder = "$(FILE_FOLDER)/out" })
  local a = fake.new_image(dt, dir .. "/A", "a.dng")
  local b = fake.new_image(dt, dir .. "/B", "b.dng")
  dt.actions.lowlight_enhance.callback("clicked", { a, b })
  eq(#recorded_runs(record), 1, "the second folder is not tried")
  local count = 0
  for _, msg in ipairs(dt.messages) do
    if msg:find("no weights found", 1, true) then count = count + 1 end
  end
  eq(count, 1, "the daemon's reason is shown once")
  eq(dt.messages[#dt.messages], "low light: 2 not processed: the daemon did not start: no weights found",
    "the final summary counts the photos never sent and says why")
  local report = read_file(M.report_path())
  contains(report, "not processed " .. dir .. "/A/a.dng", "the report names each")
  contains(report, "not processed " .. dir .. "/B/b.dng", "the report names each")
end)

test("a_crash_with_stderr_only_is_explained", function()
  local dir = tmpdir()
  local dt = plugin_with_client((fake_client(dir, "silent_crash")))
  dt.actions.lowlight_enhance.callback("clicked", { fake.new_image(dt, dir, "a.dng") })
  eq(dt.messages[#dt.messages], "low light: 1 not processed: no daemon: cannot connect to tcp://127.0.0.1:1")
end)

test("non_json_output_is_logged_and_ignored", function()
  local dir = tmpdir()
  local dt = plugin_with_client((fake_client(dir, "chatty")))
  dt.actions.lowlight_enhance.callback("clicked", { fake.new_image(dt, dir, "a.dng") })
  eq(#dt.imports, 1, "result imported")
  contains(find_message(dt.log, "ignored client output"), "loading model...", "logged")
end)

test("cancel_terminates_the_client_and_imports_nothing_more", function()
  local dir = tmpdir()
  local client, marker = slow_client(dir)
  local dt = plugin_with_client(client)
  local polls = 0
  dt.sleep_hook = function(d)
    polls = polls + 1
    if polls == 3 then
      d.jobs[1].cancel(d.jobs[1]) -- the user presses the job's cancel button
    end
  end
  local started = os.time()
  dt.actions.lowlight_enhance.callback("clicked", { fake.new_image(dt, dir, "a.dng") })
  assert(os.time() - started < 8, "the client stopped long before its 10 s run")
  assert(exists(marker), "the client got SIGTERM")
  eq(#dt.imports, 0, "nothing imported")
  eq(dt.messages[#dt.messages], "low light: 1 not processed; cancelled")
  eq(dt.jobs[#dt.jobs].valid, false, "job ended")
end)

test("second_batch_while_busy_is_refused", function()
  local dir = tmpdir()
  local dt, M = plugin_with_client((fake_client(dir, "ok")))
  local image = fake.new_image(dt, dir, "a.dng")
  local inner
  dt.sleep_hook = function()
    if inner == nil then
      inner = M.enhance_images({ image })
    end
  end
  M.enhance_images({ image })
  eq(inner, nil, "refused")
  find_message(dt.messages, "a batch is already running")
  eq(#dt.imports, 1, "first batch finished")
  for _, job in ipairs(dt.jobs) do
    eq(job.text:find("a.dng", 1, true) ~= nil or job.text == "low light: waiting for the daemon", true, "the first batch's jobs only")
  end
end)

test("summaries_fit_a_toast_with_real_plurals", function()
  local dt = fake.new()
  local M = fake.load_plugin(dt, PLUGIN).lowlight
  local base = { total = 1, ok = 1, failed = 0, skipped = 0, unprocessed = 0, cancelled = false }
  local function summary(changes, place)
    local c = {}
    for k, v in pairs(base) do c[k] = v end
    for k, v in pairs(changes) do c[k] = v end
    local whole, toast = M.summary(c, place)
    assert(utf8.len(toast) <= M.CONSTANTS.toast_max, "toast too long: " .. toast)
    return toast, whole
  end
  eq(summary({}, "lowlight"), "low light: 1 of 1 photo enhanced, in lowlight", "singular")
  eq(summary({ total = 3, ok = 2, failed = 1 }, "night"), "low light: 2 of 3 photos enhanced, 1 failed, in night", "plural")
  eq(summary({ total = 4, ok = 1, unprocessed = 3, stop_reason = "the daemon died" }, "x"),
    "low light: 1 of 4 photos enhanced, 3 not processed, in x: the daemon died", "the stop reason inside")
  local reason = "cannot load the engine: No module named 'numpy' (the daemon did not start; see /run/user/1000/lowlight-raw/daemon.log)"
  local toast, whole = summary({ total = 2, ok = 0, unprocessed = 2, stop_reason = reason })
  eq(toast, "low light: 2 not processed: cannot load the engine: No module named 'numpy' (th…", "the cause survives the cut")
  contains(whole, "/run/user/1000/lowlight-raw/daemon.log", "the report keeps it whole")
  eq(summary({ total = 0, ok = 0, skipped = 2, skip_reason = "already enhanced" }),
    "low light: nothing to enhance, 2 skipped: already enhanced", "one shared reason")
  eq(summary({ total = 2, ok = 1, unprocessed = 1, cancelled = true }, "a"), "low light: 1 of 2 photos enhanced, 1 not processed, in a; cancelled")
  eq(M.fit("ünïcødé ☾ night", 9), "ünïcødé …", "cuts characters, not bytes")
  eq(M.fit("abc\xff\xfedef", 5), "abc\xff…", "a name that is not UTF-8 is cut by bytes")
  eq(M.short_reason("/a b/c.dng: cannot read (/a b/c.dng is short)", "/a b/c.dng"), "cannot read (c.dng is short)")
  eq(M.base_names("/opt/w/lowlight-quality.pt: not shipped (see /run/user/1000/lowlight-raw/daemon.log), tcp://127.0.0.1:5"),
    "lowlight-quality.pt: not shipped (see daemon.log), tcp://127.0.0.1:5", "paths shortened, addresses kept")
end)

test("a_selected_result_stands_for_its_original_and_enhanced_originals_wait", function()
  local dir = tmpdir()
  local client, record = fake_client(dir, "ok")
  local dt, M = plugin_with_client(client)
  local done = fake.new_image(dt, dir, "done.dng")
  local result = fake.new_image(dt, dir, "done_lowlight.dng")
  result:group_with(done)
  local fresh = fake.new_image(dt, dir, "fresh.dng")
  local fresh_result = fake.new_image(dt, dir, "fresh_lowlight_1.tif")
  fresh_result:group_with(fresh)
  local orphan = fake.new_image(dt, dir, "gone_lowlight.dng")
  -- grouping on: the visible thumbnails are the results; select-all also takes the originals
  local wanted, skipped = M.choose({ result, done, fresh_result, orphan, fresh }, false)
  eq(#wanted, 0, "both originals already have a result")
  eq(#skipped, 3, "each photo once")
  eq(skipped[1].image, done, "the result stands for its original")
  contains(skipped[1].reason, "already enhanced", "why")
  eq(skipped[3].image, orphan, "a result without its original")
  wanted = M.choose({ result, done, fresh_result, orphan, fresh }, true)
  eq(#wanted, 2, "with 'enhance again' both originals go")
  eq(wanted[1], done, "in selection order")
  eq(wanted[2], fresh, "once each")

  dt.preferences.write("lowlight_enhance", "again", "bool", true)
  M.on_button("clicked", { result })
  local runs = recorded_runs(record)
  eq(runs[1][#runs[1]], dir .. "/done.dng", "clicking a result enhances its original")
  eq(dt.imports[1].filename, "done_lowlight.dng", "the fake client names it like the engine")
end)

test("results_in_another_folder_are_shown", function()
  local dir = tmpdir()
  local dt, M = plugin_with_client((fake_client(dir, "ok")), { output_folder = "$(FILE_FOLDER)/lowlight" })
  local a = fake.new_image(dt, dir, "a.dng")
  dt.collection = { a } -- the lighttable shows the source's film roll
  M.on_button("clicked", { a })
  eq(#dt.filters, 1, "the collection was switched")
  eq(dt.filters[1][1].item, "DT_COLLECTION_PROP_FILMROLL", "to a film roll")
  eq(dt.filters[1][1].data, dir .. "/lowlight", "the results' one")
  eq(dt.collection[1], dt.imports[1], "the result is in view")
  eq(dt.messages[#dt.messages], "low light: 1 of 1 photo enhanced, in lowlight")
  -- results beside their sources, already in view: the collection is left alone
  local dt2, M2 = plugin_with_client((fake_client(dir, "ok")))
  local b = fake.new_image(dt2, dir, "b.dng")
  dt2.collection = { b }
  local imported = dt2.database.import
  dt2.database.import = function(path)
    local image = imported(path)
    table.insert(dt2.collection, image)
    return image
  end
  M2.on_button("clicked", { b })
  eq(#dt2.filters, 0, "no switch when they are already shown")
end)

test("progress_label_says_what_happens", function()
  local dir = tmpdir()
  local dt, M = plugin_with_client((fake_client(dir, "ok")))
  M.on_button("clicked", { fake.new_image(dt, dir, "a.dng"), fake.new_image(dt, dir, "b ü.dng") })
  eq(dt.jobs[1].text, "low light: waiting for the daemon", "while the daemon starts")
  local labels = {}
  for i = 2, #dt.jobs do
    labels[#labels + 1] = dt.jobs[i].text
  end
  eq(table.concat(labels, " | "), "low light: 1/2 a.dng | low light: 2/2 b ü.dng", "then each file")
end)

test("button_follows_the_images_to_act_on", function()
  local dt = fake.new()
  local data = fake.load_plugin(dt, PLUGIN)
  eq(dt.sensitive.lowlight_enhance, false, "nothing to act on at start")
  dt.gui.action_images = { fake.new_image(dt, "/p", "a.dng") }
  dt.events["lowlight_enhance/selection-changed"].callback("selection-changed")
  eq(dt.sensitive.lowlight_enhance, true, "a selection")
  dt.gui.action_images = {}
  dt.events["lowlight_enhance/mouse-over-image-changed"].callback("mouse-over-image-changed", nil)
  eq(dt.sensitive.lowlight_enhance, false, "nothing hovered or selected")
  data.destroy()
  eq(dt.events["lowlight_enhance/selection-changed"], nil, "events removed")
end)

test("install_record_names_the_client_and_the_shipped_models", function()
  local dir = tmpdir()
  os.execute("cp " .. q(PLUGIN) .. " " .. q(dir .. "/lowlight_enhance.lua"))
  write_file(dir .. "/lowlight_enhance.json", '{"client": "/opt/venv/bin/lr-bridge", "models": ["auto", "fast", "fast-licence-clean"]}')
  local dt = fake.new()
  local M = fake.load_plugin(dt, dir .. "/lowlight_enhance.lua").lowlight
  local models
  for _, pref in ipairs(dt.registered_prefs) do
    if pref.name == "model" then models = table.concat(pref.extra, ",") end
  end
  eq(models, "auto,fast,fast-licence-clean", "quality is not offered: not shipped")
  local settings = assert(M.read_settings())
  eq(settings.client, "/opt/venv/bin/lr-bridge", "the recorded client, no PATH needed")
  dt.preferences.write("lowlight_enhance", "client", "string", "/my/lr-bridge")
  eq(assert(M.read_settings()).client, "/my/lr-bridge", "the preference wins")
  dt.preferences.write("lowlight_enhance", "model", "enum", "quality") -- chosen before an update
  local none, err = M.read_settings()
  eq(none, nil, "refused")
  eq(err, "model 'quality' is not installed (preferences > lua options)")
  eq(#M.install_info("not json").models, #M.CONSTANTS.models, "a damaged record offers every model")
end)

test("nothing_selected_and_bad_settings_start_no_client", function()
  local dir = tmpdir()
  local client, record = fake_client(dir, "ok")
  local dt, M = plugin_with_client(client)
  eq(M.enhance_images({}), nil, "empty selection")
  find_message(dt.messages, "select the photos to enhance first")
  dt.preferences.write("lowlight_enhance", "ev", "string", "very bright")
  eq(M.enhance_images({ fake.new_image(dt, dir, "a.dng") }), nil, "bad exposure setting")
  find_message(dt.messages, "exposure must be 'auto' or a number")
  eq(#recorded_runs(record), 0, "client never ran")
  eq(#dt.jobs, 0, "no job")
end)

-- ---------------------------------------------------------------------------
-- runner
-- ---------------------------------------------------------------------------

local selected = {}
if arg[1] == "--list" then
  print(table.concat(names, "\n"))
  os.exit(0)
end
for i = 1, #arg do
  assert(tests[arg[i]], "no test named " .. arg[i])
  selected[#selected + 1] = arg[i]
end
if #selected == 0 then
  selected = names
end
local failures = 0
for _, name in ipairs(selected) do
  local ok, err = xpcall(tests[name], debug.traceback)
  if ok then
    print("PASS " .. name)
  else
    failures = failures + 1
    print("FAIL " .. name .. "\n" .. tostring(err))
  end
end
for _, dir in ipairs(tmp_dirs) do
  os.execute("rm -rf " .. q(dir))
end
fake.cleanup()
print(string.format("%d passed, %d failed", #selected - failures, failures))
os.exit(failures == 0 and 0 or 1)
