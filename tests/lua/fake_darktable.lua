--[[
  A stand-in for the `darktable` module, enough for plugin/lowlight_enhance.lua to load and run
  under plain lua5.4. It records what the plugin asks of darktable (messages, registrations,
  imports, grouping, jobs) so tests can assert on it. Processes and files are real.
]]

local fake = {}
local config_dirs = {}

--- A fake darktable image at `path`/`filename` with the fields the plugin reads and writes.
function fake.new_image(dt, path, filename, fields)
  local image = {
    path = path, filename = filename, rating = 0, title = "", description = "",
    red = false, yellow = false, green = false, blue = false, purple = false,
    tags = {}, grouped_with = nil, leader = false,
  }
  image.group = image -- its own group until grouped with another
  for key, value in pairs(fields or {}) do
    image[key] = value
  end
  function image:group_with(other)
    self.grouped_with = other
    self.group = other.group
  end
  function image:get_group_members()
    local members = {}
    for _, member in ipairs(dt.all_images) do
      if member.group == self.group then
        members[#members + 1] = member
      end
    end
    return members
  end
  function image:make_group_leader()
    self.leader = true
  end
  dt.all_images[#dt.all_images + 1] = image
  return image
end

--- A fresh fake `darktable` table; `api` = {major, minor, patch} (default 9.0.0). Its config
--- folder is a new temporary folder (removed by fake.cleanup()).
function fake.new(api)
  api = api or { 9, 0, 0 }
  local probe = io.popen("mktemp -d")
  local config_dir = probe:read("l")
  probe:close()
  config_dirs[#config_dirs + 1] = config_dir
  local dt = {
    messages = {}, log = {}, errors = {}, prefs = {}, registered_prefs = {},
    actions = {}, events = {}, jobs = {}, imports = {}, all_images = {}, selections = {},
    collection = {}, -- the images the lighttable shows (set by tests and by collect.filter)
    filters = {}, sensitive = {}, -- every collect.filter call; each action's sensitivity
    sleep_hook = nil, -- function(dt) called at every dt.control.sleep
    sleeps = 0,
  }
  dt.configuration = {
    api_version_major = api[1], api_version_minor = api[2], api_version_patch = api[3],
    api_version_string = table.concat(api, "."), has_gui = true, config_dir = config_dir,
  }
  dt.gettext = {
    gettext = function(msg) return msg end,
    ngettext = function(singular, plural, n) return n == 1 and singular or plural end,
  }
  function dt.print(msg) dt.messages[#dt.messages + 1] = msg end
  function dt.print_log(msg) dt.log[#dt.log + 1] = msg end
  function dt.print_error(msg) dt.errors[#dt.errors + 1] = msg end

  dt.preferences = {}
  function dt.preferences.register(script, name, kind, label, tooltip, default, ...)
    assert(type(label) == "string" and type(tooltip) == "string", "label and tooltip must be strings")
    dt.registered_prefs[#dt.registered_prefs + 1] = {
      script = script, name = name, kind = kind, default = default, extra = { ... },
    }
  end
  function dt.preferences.read(script, name, kind)
    local key = script .. "/" .. name
    if dt.prefs[key] ~= nil then
      return dt.prefs[key]
    end
    for _, pref in ipairs(dt.registered_prefs) do
      if pref.script == script and pref.name == name then
        assert(pref.kind == kind, "read " .. name .. " as " .. kind .. ", registered as " .. pref.kind)
        return pref.default
      end
    end
    error("preference " .. key .. " read before it was registered")
  end
  function dt.preferences.write(script, name, kind, value)
    dt.prefs[script .. "/" .. name] = value
  end

  dt.gui = { libs = { image = {}, collect = {} }, action_images = {} }
  function dt.gui.libs.collect.new_rule()
    return {}
  end
  function dt.gui.libs.collect.filter(rules)
    dt.filters[#dt.filters + 1] = rules
    local shown = {}
    for _, image in ipairs(dt.all_images) do
      if rules[1].item == "DT_COLLECTION_PROP_FILMROLL" and image.path == rules[1].data then
        shown[#shown + 1] = image
      end
    end
    dt.collection = shown
  end
  function dt.gui.libs.image.set_sensitive(name, sensitive)
    assert(dt.actions[name], "set_sensitive of an unknown action " .. tostring(name))
    dt.sensitive[name] = sensitive
  end
  function dt.gui.selection(images)
    if images ~= nil then
      dt.selections[#dt.selections + 1] = images
    end
    return dt.selections[#dt.selections] or {}
  end
  function dt.gui.libs.image.register_action(name, label, callback, tooltip)
    dt.actions[name] = { label = label, callback = callback, tooltip = tooltip }
  end
  function dt.gui.libs.image.destroy_action(name)
    assert(dt.actions[name], "destroying an unknown action " .. tostring(name))
    dt.actions[name] = nil
  end
  function dt.gui.create_job(text, percentage, cancel)
    -- a proxy, so that every write of `percent` is recorded
    local store = { text = text, percentage = percentage, cancel = cancel, percent = 0, valid = true, percents = {} }
    local job = setmetatable({}, {
      __index = store,
      __newindex = function(_, key, value)
        if key == "percent" then
          assert(store.valid, "percent set on an ended job")
          table.insert(store.percents, value)
        end
        store[key] = value
      end,
    })
    dt.jobs[#dt.jobs + 1] = job
    return job
  end

  function dt.register_event(name, kind, callback, description)
    dt.events[name .. "/" .. kind] = { callback = callback, description = description }
  end
  function dt.destroy_event(name, kind)
    assert(dt.events[name .. "/" .. kind], "destroying an unknown event")
    dt.events[name .. "/" .. kind] = nil
  end

  dt.control = { ending = false }
  function dt.control.sleep(ms)
    dt.sleeps = dt.sleeps + 1
    if dt.sleep_hook then
      dt.sleep_hook(dt)
    end
    os.execute(string.format("sleep %.3f", ms / 4000)) -- real time passes, a little faster
  end

  dt.database = {}
  function dt.database.import(path)
    local f = assert(io.open(path, "rb"), "fake import of a missing file: " .. path)
    f:close()
    local folder, name = path:match("^(.*)/([^/]*)$")
    local image = fake.new_image(dt, folder, name)
    dt.imports[#dt.imports + 1] = image
    return image
  end

  dt.tags = {}
  function dt.tags.get_tags(image)
    local list = {}
    for _, tag in ipairs(image.tags) do
      list[#list + 1] = tag
    end
    return list
  end
  function dt.tags.attach(tag, image)
    image.tags[#image.tags + 1] = tag
  end
  return dt
end

--- Remove the config folders fake.new() made.
function fake.cleanup()
  for _, dir in ipairs(config_dirs) do
    os.execute("rm -rf '" .. dir:gsub("'", "'\\''") .. "'")
  end
  config_dirs = {}
end

--- Load the plugin at `plugin_path` against the fake `dt`; returns its script_data.
function fake.load_plugin(dt, plugin_path)
  package.loaded["darktable"] = dt
  local chunk = assert(loadfile(plugin_path))
  return chunk()
end

return fake
