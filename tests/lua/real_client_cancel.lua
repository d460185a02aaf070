--[[
  The plugin's cancel button against the real `lr-bridge` client and daemon (fake darktable,
  real processes). Driven by tests/test_plugin_darktable.py through the environment:
    LOWLIGHT_CANCEL_CLIENT   the client command
    LOWLIGHT_CANCEL_FOLDER   folder of the photos; LOWLIGHT_CANCEL_FILES: their names, one a line
  Presses the job's cancel button as soon as the first file is under way, then prints
  "summary ok=N failed=M unprocessed=U cancelled=BOOL" and one "message ..." line per dt.print.
]]

local here = (arg[0]:match("^(.*)/[^/]*$") or ".")
package.path = here .. "/?.lua;" .. package.path
local fake = require "fake_darktable"

local dt = fake.new()
local M = fake.load_plugin(dt, here .. "/../../plugin/lowlight_enhance.lua").lowlight
dt.preferences.write("lowlight_enhance", "client", "string", os.getenv("LOWLIGHT_CANCEL_CLIENT"))
dt.preferences.write("lowlight_enhance", "output_folder", "string", "$(FILE_FOLDER)/out")

local folder = os.getenv("LOWLIGHT_CANCEL_FOLDER")
local images = {}
for name in os.getenv("LOWLIGHT_CANCEL_FILES"):gmatch("[^\n]+") do
  images[#images + 1] = fake.new_image(dt, folder, name)
end

-- the first job waits for the daemon; the next ones are labelled with a file: one is running
local pressed = false
dt.sleep_hook = function(d)
  local job = d.jobs[#d.jobs]
  if not pressed and #d.jobs > 1 then
    pressed = true
    job.cancel(job)
  end
end

local summary = M.enhance_images(images)
print(string.format("summary ok=%d failed=%d unprocessed=%d cancelled=%s", summary.ok, summary.failed,
  summary.unprocessed, tostring(summary.cancelled)))
for _, message in ipairs(dt.messages) do
  print("message " .. message)
end
fake.cleanup()
