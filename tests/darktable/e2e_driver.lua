--[[
  End-to-end driver for tests/test_plugin_darktable.py, run inside a real darktable through
  `--luacmd 'dofile(os.getenv("LOWLIGHT_E2E_DRIVER"))'` with the plugin installed in the
  throw-away configdir. Everything it needs comes from the environment:
    LOWLIGHT_E2E_SOURCES  the photos to import, one path per line (all are selected)
    LOWLIGHT_E2E_BROKEN   optional: one of them, overwritten with junk after the import so the
                          engine rejects it (darktable already knows the image)
    LOWLIGHT_E2E_CLIENT   the client command preference (empty: left empty, the plugin finds it)
    LOWLIGHT_E2E_TRIGGER  "action": press the shortcut action with dt.gui.action (darktable 4.x);
                          "handler": call the plugin's shortcut handler (darktable 5.x runs no
                          Lua shortcut for a dt.gui.action() made from Lua)
    LOWLIGHT_E2E_REPORT   where to write what it sees, as JSON
    LOWLIGHT_E2E_MORE     more photos, one path per line, for a last batch run through
    LOWLIGHT_E2E_KILLER   a client that kills the daemon once the first result is back
  It records every message the plugin shows (dt.print), tags, rates, labels and titles the
  photos, selects them, triggers the plugin, waits until the batch is over and reports every
  group, the selection and whether the lighttable shows the results. Then it runs the plugin on
  the results alone (each stands for its original, already enhanced: skipped), runs the last
  batch with the daemon killed under it, switches the plugin off and on again as script_manager
  does, and always quits darktable.
]]

local dt = require "darktable"

local MODULE = "lowlight_enhance"
local WAIT_LIMIT_MS = 240000

local function json(value)
  local kind = type(value)
  if kind == "table" then
    local parts = {}
    if #value > 0 or next(value) == nil then
      for _, item in ipairs(value) do
        parts[#parts + 1] = json(item)
      end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    for key, item in pairs(value) do
      parts[#parts + 1] = json(tostring(key)) .. ":" .. json(item)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif kind == "string" then
    return '"' .. value:gsub('[%c"\\]', function(c)
      return string.format("\\u%04x", c:byte())
    end) .. '"'
  elseif kind == "nil" then
    return "null"
  end
  return tostring(value)
end

local function file_of(image)
  return image.path .. "/" .. image.filename
end

local function describe(image)
  local tags = {}
  for _, tag in ipairs(dt.tags.get_tags(image)) do
    tags[#tags + 1] = tag.name
  end
  local labels = {}
  for _, color in ipairs({ "red", "yellow", "green", "blue", "purple" }) do
    if image[color] then
      labels[#labels + 1] = color
    end
  end
  return {
    file = file_of(image), leader = file_of(image.group_leader), rating = image.rating,
    labels = labels, title = image.title, description = image.description, tags = tags,
  }
end

local report = { api = dt.configuration.api_version_string, groups = {}, toasts = {} }

-- each step as it starts, in REPORT.trace (flushed): where a hung darktable stopped
local trace = io.open(os.getenv("LOWLIGHT_E2E_REPORT") .. ".trace", "w")
local function step(name)
  trace:write(string.format("%.3f %s\n", os.clock(), name))
  trace:flush()
end

-- every message shown, in order (the plugin looks dt.print up at each call)
local print_toast = dt.print
dt.print = function(message)
  report.toasts[#report.toasts + 1] = message
  print_toast(message)
end

-- whether the lighttable's collection holds every image of `images`
local function shown(images)
  local files = {}
  for _, image in ipairs(dt.collection) do
    files[file_of(image)] = true
  end
  for _, image in ipairs(images) do
    if not files[file_of(image)] then
      return false
    end
  end
  return true
end

local ok, err = pcall(function()
  local plugin = package.loaded["lowlight/lowlight_enhance"]
  report.plugin_loaded = plugin ~= nil and plugin.lowlight ~= nil
  assert(report.plugin_loaded, "the plugin was not loaded from luarc")

  if os.getenv("LOWLIGHT_E2E_CLIENT") ~= "" then
    dt.preferences.write(MODULE, "client", "string", os.getenv("LOWLIGHT_E2E_CLIENT"))
  end
  dt.preferences.write(MODULE, "output_folder", "string", "$(FILE_FOLDER)/lowlight")
  dt.preferences.write(MODULE, "group_leader", "bool", true)

  step("import")
  local sources = {}
  for path in os.getenv("LOWLIGHT_E2E_SOURCES"):gmatch("[^\n]+") do
    local image = assert(dt.database.import(path), "import of " .. path)
    sources[#sources + 1] = image
  end
  -- the last batch's photos too, now: darktable 4.2 has crashed importing while it still worked
  -- on the broken photo's thumbnail
  local more = {}
  for path in os.getenv("LOWLIGHT_E2E_MORE"):gmatch("[^\n]+") do
    more[#more + 1] = assert(dt.database.import(path), "import of " .. path)
  end
  local tag = dt.tags.create("lowlight e2e|nuit étoilée")
  for i, image in ipairs(sources) do
    dt.tags.attach(tag, image)
    image.rating = 3 + (i % 2)
    image.red = true
    image.blue = true
    image.title = "night " .. i .. " «test»"
    image.description = "it's dark, " .. i
  end
  local broken = os.getenv("LOWLIGHT_E2E_BROKEN")
  if broken and broken ~= "" then
    local f = assert(io.open(broken, "wb"))
    f:write("this is not a raw file any more\n")
    f:close()
  end

  step("show the sources' film roll")
  -- the lighttable shows the sources' film roll, as when the user picked them there
  local rule = dt.gui.libs.collect.new_rule()
  rule.mode = "DT_LIB_COLLECT_MODE_AND"
  rule.item = "DT_COLLECTION_PROP_FILMROLL"
  rule.data = sources[1].path
  dt.gui.libs.collect.filter({ rule })
  report.sources_shown = shown(sources)
  step("select")
  dt.gui.selection(sources)
  report.action_images = #dt.gui.action_images
  step("trigger")
  if os.getenv("LOWLIGHT_E2E_TRIGGER") == "action" then
    dt.gui.action("lua/enhance low light", 0, "", "", 1.0)
    -- the action returns at once and the batch runs in the background; a loaded machine may start
    -- it a little later: watch until it is seen running (or has already written its report)
    local seen_busy = plugin.lowlight.is_busy()
    local started = 0
    while not seen_busy and started < 30000 do
      local log = io.open(plugin.lowlight.report_path(), "r")
      if log then log:close() break end
      dt.control.sleep(250)
      started = started + 250
      seen_busy = plugin.lowlight.is_busy()
    end
    report.busy_after_trigger = seen_busy
  else
    -- the handler runs the whole batch before it returns
    plugin.lowlight.on_shortcut("shortcut", "enhance low light")
  end
  local waited = 0
  while plugin.lowlight.is_busy() and waited < WAIT_LIMIT_MS do
    dt.control.sleep(250)
    waited = waited + 250
  end
  step("batch over")
  report.waited_ms = waited
  report.busy_at_end = plugin.lowlight.is_busy()

  for _, image in ipairs(sources) do
    local group = { source = describe(image), members = {} }
    for _, member in ipairs(image:get_group_members()) do
      group.members[#group.members + 1] = describe(member)
    end
    report.groups[#report.groups + 1] = group
  end
  local results = {}
  for _, image in ipairs(dt.gui.selection()) do
    report.selection = report.selection or {}
    table.insert(report.selection, file_of(image))
    results[#results + 1] = image
  end
  report.results_shown = shown(results)
  report.first_summary = report.toasts[#report.toasts]

  -- the results alone (what the lighttable shows with grouping on): each stands for its
  -- original, which already has a result: skipped
  step("results alone")
  local again = plugin.lowlight.enhance_images(results)
  report.second_run = { ok = again.ok, failed = again.failed, skipped = again.skipped }

  -- a batch whose daemon is killed once the first result is back
  dt.preferences.write(MODULE, "client", "string", os.getenv("LOWLIGHT_E2E_KILLER"))
  step("daemon killed")
  local killed = plugin.lowlight.enhance_images(more)
  report.killed_run = { ok = killed.ok, failed = killed.failed, unprocessed = killed.unprocessed,
    stop_reason = killed.stop_reason, shown = shown(killed.imported) }
  report.killed_summary = report.toasts[#report.toasts]

  local log = io.open(plugin.lowlight.report_path(), "r")
  report.report_file = log and log:read("a") or nil
  if log then log:close() end

  step("reload")
  -- script_manager switches the plugin off (destroy) and on again (require)
  plugin.destroy()
  package.loaded["lowlight/lowlight_enhance"] = nil
  local reloaded = require "lowlight/lowlight_enhance"
  report.reloaded = reloaded ~= nil and reloaded.lowlight ~= nil and reloaded ~= plugin
end)

report.ok = ok
if not ok then
  report.error = tostring(err)
end
local out = io.open(os.getenv("LOWLIGHT_E2E_REPORT"), "w")
if out then
  out:write(json(report), "\n")
  out:close()
end
step("quit")
trace:close()
dt.gui.action("global/quit", 0, "", "", 1.0)
