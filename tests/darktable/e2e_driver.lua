--[[
  End-to-end driver for tests/test_plugin_darktable.py, run inside a real darktable through
  `--luacmd 'dofile(os.getenv("LOWLIGHT_E2E_DRIVER"))'` with the plugin installed in the
  throw-away configdir. Everything it needs comes from the environment:
    LOWLIGHT_E2E_SOURCES  the photos to import, one path per line (all are selected)
    LOWLIGHT_E2E_BROKEN   optional: one of them, overwritten with junk after the import so the
                          engine rejects it (darktable already knows the image)
    LOWLIGHT_E2E_CLIENT   the client command preference
    LOWLIGHT_E2E_TRIGGER  "action": press the shortcut action with dt.gui.action (darktable 4.x);
                          "handler": call the plugin's shortcut handler (darktable 5.x runs no
                          Lua shortcut for a dt.gui.action() made from Lua)
    LOWLIGHT_E2E_REPORT   where to write what it sees, as JSON
  It tags, rates, labels and titles the photos, selects them, triggers the plugin, waits until
  the batch is over and reports every group and the selection. Then it runs the plugin on the
  results alone (all skipped), switches the plugin off and on again as script_manager does, and
  always quits darktable.
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

local report = { api = dt.configuration.api_version_string, groups = {} }

local ok, err = pcall(function()
  local plugin = package.loaded["lowlight/lowlight_enhance"]
  report.plugin_loaded = plugin ~= nil and plugin.lowlight ~= nil
  assert(report.plugin_loaded, "the plugin was not loaded from luarc")

  dt.preferences.write(MODULE, "client", "string", os.getenv("LOWLIGHT_E2E_CLIENT"))
  dt.preferences.write(MODULE, "output_folder", "string", "$(FILE_FOLDER)/lowlight")
  dt.preferences.write(MODULE, "group_leader", "bool", true)

  local sources = {}
  for path in os.getenv("LOWLIGHT_E2E_SOURCES"):gmatch("[^\n]+") do
    local image = assert(dt.database.import(path), "import of " .. path)
    sources[#sources + 1] = image
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

  dt.gui.selection(sources)
  report.action_images = #dt.gui.action_images
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

  -- the results alone (as a select-all with grouping on would include them): all skipped
  local again = plugin.lowlight.enhance_images(results)
  report.second_run = { ok = again.ok, failed = again.failed, skipped = again.skipped }
  local log = io.open(plugin.lowlight.report_path(), "r")
  report.report_file = log and log:read("a") or nil
  if log then log:close() end

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
dt.gui.action("global/quit", 0, "", "", 1.0)
