"""Word lists for the synthetic world in `world.py`, kept apart so the grammar there stays readable.

Nouns are written "singular" or "singular/plural" when the plural is irregular; verbs are "base/past", or
"base/past/ing" when the -ing form doubles a consonant that the past tense does not show. Records are
"field|field|..." separated by ";". Storing the forms explicitly keeps the English correct without a
morphology engine.
"""


def _words(text: str) -> tuple[str, ...]:
    return tuple(word.replace("_", " ") for word in text.split())


def _records(text: str) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(f.strip() for f in rec.split("|")) for rec in text.split(";") if rec.strip())


FEMALE_NAMES = _words("""
Alice Anna Ada Agnes Amy Bella Beth Clara Cora Daisy Dora Edith Elsa Emma Eva Fay Flora Freya Grace
Greta Hazel Helen Ida Ivy Iris Jane Joan Julia Lorna Kate Lara Laura Lily Lucy Lena Mabel Maya Mia Molly
Nell Nina Nora Pearl Polly Rose Ruby Ruth Sara Sophie Stella Tess Una Vera Viola Wendy Zoe Ella Esme Gwen
Hilda Irene Jess Kitty Leah Maud Mona Nancy Alma Bridget Celia Delia Enid Gemma Hattie Jenny Lottie Mavis
Agatha Beatrice Constance Dorothy Eleanor Florence Georgina Harriet Imogen Josephine Katherine Lavinia
Matilda Ophelia Prudence Rosalind Sylvia Theodora Ursula Winifred
""")
MALE_NAMES = _words("""
Adam Alan Albert Arthur Ben Bert Carl Colin Dan David Eddie Edwin Felix Frank Fred George Gus Harry
Henry Hugo Ian Jack Jacob James Jim Joe John Karl Leo Lewis Luke Max Ned Nick Noah Oliver Oscar Otto
Owen Paul Peter Phil Ralph Ray Robin Roy Sam Simon Stan Ted Theo Tom Toby Victor Walter Wilfred Abel Basil
Cyril Dennis Ernest Gilbert Harold Isaac Jonah Kenneth Lionel Martin Norman Percy Quentin Rufus Silas
Ambrose Bartholomew Clement Digby Ebenezer Frederick Godfrey Horace Ignatius Leopold Montague Nathaniel
Octavius Peregrine Reginald Septimus Tobias Wilbur Cuthbert Alfred
""")
SURNAMES = _words("""
Abbott Archer Barnes Bell Birch Blake Bond Booth Bright Brown Carter Chase Clark Cole Cotton Crane
Cross Dale Dawson Drake Dunn Ellis Emery Finch Fisher Ford Frost Garner Gill Goodwin Gray Hale Hardy
Hart Hayes Holt Howard Hunt Irwin Jarvis Keane Kemp Lamb Lane Marsh Mason Meadows Mills Moss Nash
Noble Oakes Page Parr Pike Potts Price Quill Reed Rowe Sharp Shaw Slade Stone Swift Thorne Tull Vale
Wade Ward Webb West Wilde Wood Wren Yates Ashworth Blackwood Cartwright Dewhurst Fairweather Greenhalgh
Hollis Ingram Kettle Langley Merriweather Northcott Oldfield Pennington Quigley Radcliffe Sedgwick Thackeray
Underwood Vickers Whitlock Yardley Armitage Bramwell Coleridge Danvers Entwistle Fothergill Gladstone Hathaway
""")
TOWN_NAMES = _words("""
Ashford Brindle Corran Dunmere Elmstead Fallowby Greywater Hollin Kestwick Larkmoor Millbrook Netherby
Oakhurst Pennick Rushden Stavely Thornbury Wrenfield
""")
RIVER_NAMES = _words("Wend Alder Brant Corrie Dove Esk Fenn Glyde Kell Isel Lune Marr Nidd Orme Tarn Ure Wye Rye")
HILL_NAMES = _words(
    "Beacon Crow Windy Bell Long Grey Round Hare Pike Wolf Raven Thorn Castle Cold Heather Lark Ewe Badger"
)
STREET_NAMES = _words("""
Mill Church Bridge Market Station Orchard Chapel Well Baker Water Castle Garden Meadow Rose Willow
Kings Queens Hill Forge Tanners Weavers Cherry Acorn Fountain Harbour Abbey Pump Dove Swan
""")
STREET_KINDS = _words("Street Lane Road Row Way Walk")
FAR_PLACES = _words("""
Orlen Vask Teralon Mirren Quaybridge Saltmarsh Highcombe Dorrow Farhaven Lindqvist Marovia Tollund
Estwater Caddon Brightsea Pelham Westerby Norwold Galloway Sunderby Kellmoor Ardencourt Saltholm Varne
Ostry Bellhaven Cragmouth Dunlow Emberly Fairhold
""")
PET_NAMES = _words("""
Biscuit Bramble Bubbles Buttons Clover Cocoa Crumble Dot Fudge Ginger Hopper Jasper Juniper Lucky
Mittens Muffin Nutmeg Patch Pepper Pickle Pip Poppy Pudding Rascal Rusty Scamp Shadow Smudge Snowy
Socks Sooty Sparky Speckle Sprout Sunny Tansy Thistle Tiger Toffee Treacle Tufty Twiggy Waffle
Whiskers Wiggles Ziggy Bonnie Barley Bumble Comet Dandy Echo Fidget Gizmo Honey Inky Jelly Kipper
Lolly Marble Noodle Oddball Peanut Quince Rolo Saffron Tinker Truffle Velvet Wisp Zebedee
""")
PET_SPECIES = _words(
    "dog cat rabbit tortoise parrot goat pony hen duck goose hamster canary ferret donkey pig mouse/mice"
)
PET_ADJS = _words("""
playful lazy fluffy greedy noisy shy clever gentle cheeky friendly sleepy curious bossy nervous brave
loyal restless stubborn silly proud
""")
# job | where the work is done | what the job does (verb phrase; its verb must be in VERBS)
JOBS = _records("""
baker|at the bakery|bake bread; butcher|at the butcher's shop|sell meat; carpenter|in the workshop|make chairs;
blacksmith|at the forge|shoe horses; fisher|on the river|catch fish; farmer|on the farm|grow wheat;
miller|at the mill|grind flour; potter|at the pottery|shape clay pots; weaver|at the loom|weave cloth;
tailor|in the tailor's shop|sew coats; cobbler|in the shoe shop|mend shoes; teacher|at the school|teach children;
doctor|at the surgery|treat patients; nurse|at the infirmary|care for the sick;
letter carrier|at the post office|deliver letters; shepherd|on the hills|tend sheep;
gardener|in the gardens|grow flowers; beekeeper|in the orchard|keep bees; brewer|at the brewery|brew cider;
innkeeper|at the inn|serve meals; grocer|at the grocery|sell vegetables; librarian|at the library|lend books;
painter|in the studio|paint pictures; builder|at the builder's yard|build houses; mason|at the quarry|cut stone;
clockmaker|in the clock shop|repair clocks; glassblower|at the glassworks|blow glass;
candlemaker|at the chandlery|make candles; boatbuilder|at the boatyard|build boats;
ferry keeper|at the ferry|row people across the river; musician|in the town band|play the fiddle;
cheesemaker|at the dairy|make cheese; ropemaker|at the rope walk|twist rope;
basket maker|in the basket shed|weave baskets; forester|in the forest|plant trees;
woodcutter|in the woods|chop wood; lamplighter|in the streets|light the lamps;
printer|at the print shop|print books; bookbinder|at the bindery|bind books; jeweller|at the jeweller's|make rings;
locksmith|at the lock shop|fix locks; barber|at the barber's shop|cut hair; saddler|at the saddlery|stitch saddles;
wheelwright|at the wheel shop|make wheels; thatcher|on the rooftops|thatch roofs;
mapmaker|in the map room|draw maps; toymaker|at the toy shop|carve toys; hatter|at the hat shop|make hats;
vet|at the animal clinic|look after sick animals; dyer|at the dye works|dye cloth;
tanner|at the tannery|tan leather; cooper|at the cooperage|make barrels; florist|at the flower stall|sell flowers;
clerk|at the town hall|keep records; cook|in the kitchen of the inn|cook meals;
chemist|at the chemist's shop|mix medicines; greengrocer|at the market|sell fruit
""")
HOBBIES = _words("""
paint_pictures play_the_fiddle fish_in_the_river collect_shells grow_roses read_stories knit_scarves
sing_in_the_choir climb_hills watch_birds bake_cakes carve_wood sketch_boats play_chess swim_in_the_lake
write_poems sew_quilts press_flowers collect_stamps play_the_flute ride_horses row_boats walk_in_the_woods
build_model_ships grow_tomatoes keep_a_diary play_cards dance_at_the_inn whittle_spoons fly_kites
study_the_stars pick_mushrooms make_jam tell_stories weave_rugs play_the_drum
""")
# animal | colour | where it lives | what it eats | its coat | what it does there (a verb)
ANIMALS = _records("""
fox/foxes|red|in the woods|mice|fur|bark; badger|grey|in the woods|worms|fur|grunt;
owl|brown|in the old barns|mice|feathers|hoot; heron|grey|by the river|fish|feathers|croak;
otter|brown|by the river|fish|fur|whistle; deer/deer|brown|in the forest|grass|fur|bark;
hare|brown|in the fields|grass|fur|squeal; hedgehog|brown|under the hedges|beetles|spines|snuffle;
squirrel|red|in the tall trees|nuts|fur|chatter; robin|red|in the gardens|worms|feathers|sing;
blackbird|black|in the gardens|berries|feathers|sing; crow|black|in the fields|seeds|feathers|caw;
magpie|black|in the hedges|beetles|feathers|chatter; swan|white|on the lake|weeds|feathers|hiss;
frog|green|in the pond|flies|skin|croak; toad|brown|in the damp grass|slugs|skin|croak;
trout/trout|silver|in the streams|flies|scales|splash; salmon/salmon|silver|in the river|shrimps|scales|leap;
eel|black|in the mud|snails|skin|wriggle; bee|yellow|in the meadows|nectar|fur|buzz;
wasp|yellow|in the hedges|fruit|skin|buzz; butterfly/butterflies|orange|in the meadows|nectar|wings|flutter;
moth|grey|in the dark lanes|nectar|wings|flutter; beetle|black|under the stones|leaves|wings|scuttle;
slug|brown|in the damp grass|lettuce|skin|crawl; mole|black|under the fields|worms|fur|dig;
bat|brown|in the caves|moths|fur|squeak; mouse/mice|grey|in the hay|seeds|fur|squeak;
rat|brown|by the docks|scraps|fur|squeak; weasel|brown|in the stone walls|mice|fur|hiss;
stoat|brown|on the moors|rabbits|fur|chatter; lark|brown|over the meadows|seeds|feathers|sing;
wren|brown|in the hedges|spiders|feathers|trill; goose/geese|grey|on the marsh|grass|feathers|honk;
duck|brown|on the pond|weeds|feathers|quack; cow|black|in the meadows|grass|hide|moo;
sheep/sheep|white|on the hills|grass|wool|bleat; goat|white|on the rocky slopes|leaves|hair|bleat;
horse|brown|in the paddock|hay|hair|neigh; donkey|grey|in the paddock|thistles|hair|bray;
pig|pink|in the farmyard|turnips|bristles|grunt; hen|brown|in the farmyard|grain|feathers|cluck;
cockerel|red|in the farmyard|grain|feathers|crow; kingfisher|blue|by the river|minnows|feathers|whistle;
woodpecker|green|in the forest|grubs|feathers|drum; seal|grey|on the rocks by the sea|fish|fur|bark;
gull|white|on the cliffs|fish|feathers|screech; pigeon|grey|on the roofs|crumbs|feathers|coo;
dragonfly/dragonflies|blue|by the pond|gnats|wings|hum; spider|black|in the corners of barns|flies|hair|spin;
newt|orange|in the pond|tadpoles|skin|swim; lizard|green|on the warm rocks|ants|scales|bask;
sparrow|brown|under the eaves|crumbs|feathers|chirp; starling|black|on the chimneys|grubs|feathers|chatter;
thrush|brown|in the orchards|snails|feathers|sing; swallow|blue|in the barns|flies|feathers|swoop;
finch|yellow|in the hedges|seeds|feathers|twitter; jay|pink|in the oak woods|acorns|feathers|screech;
rook|black|in the tall elms|worms|feathers|caw; buzzard|brown|over the hills|rabbits|feathers|soar;
kestrel|brown|over the fields|voles|feathers|hover; curlew|brown|on the mudflats|crabs|feathers|wade;
moorhen|black|on the ponds|weeds|feathers|paddle; cuckoo|grey|in the woods|caterpillars|feathers|call;
vole|brown|by the streams|roots|fur|scurry; shrew|brown|in the leaf litter|insects|fur|scurry;
rabbit|brown|in the meadows|clover|fur|nibble; grasshopper|green|in the long grass|grass|skin|hop;
ladybird|red|on the rose bushes|greenflies|wings|crawl; ant|black|under the stones|crumbs|skin|scurry;
caterpillar|green|on the cabbages|leaves|skin|creep; pike/pike|green|in the deep pools|fish|scales|lurk;
carp/carp|golden|in the mill pond|weeds|scales|glide; crab|red|on the shore|shrimps|shells|scuttle;
badger cub|grey|in the setts|worms|fur|tumble; cat|black|in the farmyard|mice|fur|prowl;
pony|brown|on the common|grass|hair|trot; tortoise|brown|in the walled gardens|lettuce|shells|plod
""")
# tree | what its wood is used for
TREES = _records("""
oak|beams; ash|tool handles; elm|coffins; birch|brooms; beech|chairs; willow|baskets; pine|masts;
fir|boxes; yew|bows; holly|walking sticks; hazel|fences; rowan|spoons; alder|clogs; maple|bowls;
cherry|cabinets; lime|carvings; chestnut|posts; walnut|fine tables; poplar|crates; larch|boats;
cedar|chests; hawthorn|mallets; sycamore|rolling pins; juniper|pegs; spruce|fiddles; aspen|matches
""")
# flower | the season it blooms in
FLOWERS = _records("""
snowdrop|winter; crocus|spring; daffodil|spring; primrose|spring; bluebell|spring; tulip|spring;
violet|spring; cowslip|spring; rose|summer; poppy/poppies|summer; daisy/daisies|summer; lily/lilies|summer;
foxglove|summer; buttercup|summer; lupin|summer; cornflower|summer; sunflower|summer; pansy/pansies|summer;
snapdragon|summer; peony/peonies|summer; marigold|summer; campion|summer; iris/irises|summer;
dahlia|autumn; aster|autumn; cyclamen|autumn; chrysanthemum|autumn; hellebore|winter; orchid|spring
""")
FRUITS = _words("""
apple pear plum cherry/cherries peach/peaches apricot grape lemon orange fig damson quince gooseberry/gooseberries
strawberry/strawberries raspberry/raspberries blackberry/blackberries melon medlar nectarine blueberry/blueberries
""")
VEGETABLES = _words("""
carrot onion potato/potatoes turnip parsnip leek cabbage cucumber tomato/tomatoes radish/radishes beetroot
marrow pumpkin lettuce pepper courgette swede artichoke mushroom
""")
SMALL_THINGS = _words("""
egg bun biscuit marble shell pebble button candle nail feather bead acorn conker stick ribbon stamp
walnut chestnut sweet pencil spool bobbin peg pin cork token
""")
CONTAINERS = _words("basket box bag bucket jar sack tray crate bowl tin dish pot pouch barrel")
MASS_FOODS = _words("""
bread cheese honey butter jam porridge soup milk cream flour sugar salt rice oats barley tea cocoa cider
toast gravy custard fudge treacle marmalade yoghurt lemonade
""")
# dish | how it is cooked (a verb) | minutes | what goes into it
DISHES = _records("""
apple pie|bake|40|apples, flour, butter and sugar; plum cake|bake|50|plums, flour, eggs and honey;
onion soup|boil|25|onions, butter, salt and water; fish pie|bake|35|fish, potatoes, milk and cheese;
bean stew|stew|60|beans, carrots, onions and herbs; pancakes|fry|10|flour, eggs and milk;
cheese scones|bake|20|flour, cheese, butter and milk; leek broth|boil|30|leeks, potatoes, barley and salt;
cherry tart|bake|35|cherries, flour, sugar and cream; mushroom soup|boil|25|mushrooms, cream and onions;
roast potatoes|roast|50|potatoes, oil and salt; pea soup|boil|45|peas, onions and mint;
honey biscuits|bake|15|honey, flour, oats and butter; rice pudding|bake|60|rice, milk, sugar and nutmeg;
carrot cake|bake|45|carrots, flour, eggs and sugar; fried eggs|fry|5|eggs, butter and salt;
pumpkin soup|boil|30|pumpkin, onions and cream; berry crumble|bake|40|berries, oats, butter and sugar;
turnip stew|stew|60|turnips, onions, barley and herbs; gingerbread|bake|45|ginger, treacle, flour and butter;
baked apples|bake|30|apples, raisins and honey; porridge with honey|boil|15|oats, milk and honey;
potato cakes|fry|15|potatoes, flour and butter; lemon curd tart|bake|30|lemons, eggs, sugar and butter;
mutton stew|stew|90|mutton, potatoes, onions and barley; roast chicken|roast|80|chicken, thyme and lemons
""")
COLOURS = _words("""
red blue green yellow orange purple pink brown black white grey golden silver crimson scarlet amber
ivory indigo olive copper cream lemon navy maroon turquoise lilac tan plum emerald sapphire
""")
PAIRED_CLOTHES = _words("gloves mittens boots shoes slippers socks sandals clogs")
MATERIALS = _words("wooden iron clay stone woollen cotton linen silk leather straw glass brass copper tin silver")
HOUSEHOLD = _words("""
cup mug bowl plate jug kettle teapot spoon fork knife/knives pan basket bucket candlestick lamp lantern
clock mirror rug blanket pillow quilt curtain vase jar bottle purse wallet key lock book letter map
picture ribbon button needle thimble ladder broom brush comb towel umbrella stool chair table bench shelf/shelves
cupboard chest drawer cushion doormat tray sieve ladle teacup saucer wardrobe bookcase bed cradle
casket inkpot quill pen pencil_case satchel trunk suitcase hamper footstool armchair sofa desk washstand
basin jug_of_water candle_snuffer birdcage flowerpot hourglass music_box spinning_wheel tablecloth napkin
teaspoon saucepan frying_pan colander grater whisk tankard goblet platter tureen coal_scuttle fire_screen
poker mantel_clock writing_desk ink_bottle letter_opener paperweight bookend music_stand sewing_box
button_tin knitting_bag hatbox jewellery_box snuffbox spectacle_case walking_stick umbrella_stand
""")
TOOLS = _words("""
hammer saw chisel spade shovel rake hoe axe sickle scythe trowel pitchfork wheelbarrow wrench file drill
plane mallet crowbar lever pulley anvil net fishing_rod hook
rope_ladder watering_can rolling_pin whetstone needle_case pocket_knife/pocket_knives spindle loom_shuttle
paintbrush easel chalkboard compass telescope pickaxe spanner
screwdriver bradawl gimlet sledgehammer padlock funnel grindstone ruler tape_measure stepladder
hacksaw spokeshave awl auger adze billhook pruning_knife/pruning_knives hand_fork dibber
magnifying_glass/magnifying_glasses lantern_hook
""")
# clothes anyone might wear; WOMENS_CLOTHES are only put on women
CLOTHES = _words("""
hat cap scarf/scarves coat jacket cloak apron shirt belt jumper waistcoat sash tie collar overcoat raincoat
smock tunic hood muffler cardigan dressing_gown bowler_hat top_hat straw_hat neckerchief
""")
WOMENS_CLOTHES = _words("bonnet dress skirt shawl petticoat nightgown pinafore headscarf/headscarves frock gown")
TOYS = _words("""
kite ball doll puzzle spinning_top whistle yo-yo marble_bag hobby_horse rocking_horse jigsaw rattle
skipping_rope teddy_bear toy_boat toy_soldier puppet paper_boat wooden_train hoop kaleidoscope rag_doll
tin_drum peg_doll bean_bag board_game glove_puppet toy_theatre
""")
INSTRUMENTS = _words("fiddle flute drum harp trumpet horn lute piano cello tambourine accordion bugle banjo recorder")
TOPICS = _words("""
birds stars ships kings castles rivers mountains insects herbs knots bridges clocks maps bees trees
weather sailors islands caves fossils pirates giants dragons knights horses farming cooking gardening
boats lighthouses volcanoes deserts jungles whales oceans planets rocks windmills comets tides glaciers
mosses ferns mushrooms clouds rainbows tunnels canals bells spiders wolves bears eagles lions elephants camels
penguins icebergs shipwrecks treasure compasses kites bridges gardens mazes
""")
BUILDINGS = _words("""
bakery mill school library inn chapel bridge square market well fountain harbour museum theatre
bandstand park orchard barn stable dairy forge workshop tannery brewery granary lighthouse windmill
watermill schoolhouse town_hall post_office clock_tower boathouse almshouse infirmary toll_house
""")
TOWN_PRODUCTS = _words("""
cheese wool apples cider pottery lace honey salt timber rope boats bells clocks glass pies fish plums
cherries roses horses candles baskets hats quilts
""")
PLACES = _words("""
under_the_bed behind_the_door in_the_garden by_the_well under_the_bridge in_the_barn behind_the_mill
on_the_bench_in_the_square in_the_long_grass under_the_table in_the_shed by_the_pond in_the_orchard
near_the_gate on_the_windowsill in_the_hay_loft behind_the_woodpile at_the_bottom_of_the_stairs inside_the_teapot
under_the_stairs behind_the_sofa in_the_coal_scuttle under_a_cushion in_the_wardrobe on_top_of_the_cupboard
beside_the_well in_the_hen_house in_a_flowerpot in_the_pocket_of_an_old_coat
""")
SIZES = _words("big small tiny huge large little long short tall wide narrow thick thin heavy light")
QUALITIES = _words("""
old new fresh clean dirty broken shiny dull smooth rough soft hard warm sharp blunt bright dark
pretty plain fine lovely ugly strange useful handsome cheap precious rare common sturdy fragile
battered dusty polished faded patched spotless neat curious splendid humble favourite ancient tidy
crooked round square flat hollow solid shabby elegant simple fancy gleaming rusty creaky wobbly chipped
cracked dented painted carved striped spotted tattered worn borrowed valuable enormous delicate
""")
MOODS = _words("""
happy sad tired cheerful grumpy proud shy brave nervous excited worried calm sleepy hungry thirsty
curious pleased glad cross puzzled lonely bored surprised relieved grateful hopeful restless content
delighted merry weary anxious jolly thoughtful homesick cheerless sulky eager startled amused
""")
# the weather words that suit each season
WEATHER = {
    "winter": _words("cold frosty snowy icy grey windy foggy bitter raw dark"),
    "spring": _words("mild breezy rainy bright showery fresh damp cool sunny blustery"),
    "summer": _words("hot sunny warm dry clear still sultry bright cloudless glorious"),
    "autumn": _words("windy misty wet cool foggy damp stormy grey chilly golden"),
}
FOOD_ADJS = _words("sweet sour crisp ripe juicy sticky crunchy creamy tasty delicious warm fresh golden spicy salty")
ADVERBS = _words("""
slowly quickly quietly carefully gently loudly happily sadly softly proudly eagerly patiently kindly
calmly cheerfully nervously bravely neatly politely boldly briskly lazily merrily swiftly cautiously
gladly wisely firmly warmly sweetly tightly shyly brightly fondly gravely sternly hastily clumsily
gracefully silently noisily hungrily sleepily thoughtfully anxiously wearily
""")
ENDINGS = _words("good long happy busy quiet pleasant tiring wonderful peaceful lucky")
DAYS = _words("Monday Tuesday Wednesday Thursday Friday Saturday Sunday")
MONTHS = _words("January February March April May June July August September October November December")
MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
SEASONS = _words("winter spring summer autumn")
MONTH_SEASONS = _words("winter winter spring spring spring summer summer summer autumn autumn autumn winter")
NUMBER_WORDS = _words("""
zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen
sixteen seventeen eighteen nineteen twenty
""")
ORDINALS = _words("""
first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth fourteenth
fifteenth sixteenth seventeenth eighteenth nineteenth twentieth twenty-first twenty-second twenty-third
twenty-fourth twenty-fifth twenty-sixth twenty-seventh twenty-eighth twenty-ninth thirtieth thirty-first
""")
MEALS = _words("breakfast lunch dinner supper")
# verbs with their past tense (and -ing form where a consonant doubles that the past does not show)
VERBS = _words("""
find/found lose/lost carry/carried clean/cleaned polish/polished paint/painted mend/mended fix/fixed
borrow/borrowed lend/lent buy/bought sell/sold wrap/wrapped drop/dropped hide/hid keep/kept fold/folded
hang/hung wash/washed dry/dried bring/brought fetch/fetched take/took move/moved lift/lifted pack/packed
open/opened check/checked show/showed hold/held give/gave make/made eat/ate cook/cooked bake/baked
slice/sliced peel/peeled chop/chopped taste/tasted share/shared pick/picked grow/grew boil/boiled fry/fried
roast/roasted stew/stewed serve/served walk/walked run/ran/running hurry/hurried stroll/strolled
wander/wandered climb/climbed swim/swam/swimming row/rowed sail/sailed march/marched skip/skipped
dance/danced sing/sang whistle/whistled hum/hummed laugh/laughed sleep/slept rest/rested sit/sat/sitting
stand/stood wait/waited play/played work/worked travel/travelled ride/rode read/read write/wrote draw/drew
fish/fished say/said ask/asked reply/replied answer/answered call/called whisper/whispered shout/shouted
add/added explain/explained agree/agreed smile/smiled sigh/sighed bark/barked howl/howled hoot/hooted
squeak/squeaked quack/quacked honk/honked cluck/clucked moo/mooed bleat/bleated neigh/neighed
grunt/grunted chirp/chirped croak/croaked hiss/hissed buzz/buzzed purr/purred growl/growled caw/cawed
coo/cooed screech/screeched chatter/chattered squawk/squawked bray/brayed snuffle/snuffled
squeal/squealed splash/splashed leap/leapt wriggle/wriggled flutter/fluttered scuttle/scuttled
crawl/crawled creep/crept swoop/swooped twitter/twittered soar/soared
hover/hovered wade/waded paddle/paddled scurry/scurried nibble/nibbled hop/hopped lurk/lurked glide/glided
tumble/tumbled prowl/prowled trot/trotted plod/plodded dig/dug/digging drum/drummed spin/spun/spinning
trill/trilled crow/crowed bask/basked
shoe/shod catch/caught teach/taught treat/treated care/cared deliver/delivered tend/tended brew/brewed
build/built cut/cut/cutting repair/repaired blow/blew twist/twisted weave/wove plant/planted
light/lit print/printed bind/bound grind/ground stitch/stitched thatch/thatched carve/carved look/looked dye/dyed
tan/tanned mix/mixed shape/shaped sew/sewed collect/collected knit/knitted watch/watched
sketch/sketched study/studied press/pressed tell/told fly/flew whittle/whittled feed/fed brush/brushed
visit/visited help/helped water/watered sweep/swept stack/stacked patch/patched
scrub/scrubbed sharpen/sharpened oil/oiled tidy/tidied count/counted pour/poured stir/stirred
wear/wore weigh/weighed measure/measured sort/sorted store/stored stamp/stamped
amble/ambled trudge/trudged hike/hiked race/raced dash/dashed tiptoe/tiptoed jog/jogged/jogging
hurt/hurt win/won/winning hear/heard see/saw learn/learned
""")
SPEECH = _words("said asked replied answered called whispered laughed added explained")
GREETINGS = _words("Hello Good_morning Good_day Hi")
TALK = _words("""
the_weather the_price_of_bread the_autumn_fair the_new_teacher the_broken_mill_wheel
the_harvest the_price_of_wool the_new_bridge the_summer_fair the_long_winter old_times
their_families the_river the_election the_spring_fair their_gardens the_school_play the_flood
""")
HAIR_COLOURS = _words("fair dark red grey brown black white golden sandy auburn")
HAIR_STYLES = _words("curly straight wavy short long thick thin")
EYE_COLOURS = _words("blue brown grey green hazel dark")
STRANGER_JOBS = _words("""
pedlar tinker merchant sailor juggler drover minstrel scholar pilgrim poet botanist surveyor knife_grinder
fortune_teller acrobat puppeteer storyteller explorer
""")
# the kind of place and the words that suit it, for the sights around each town
LANDSCAPE = _words("""
pond lake meadow wood forest valley cliff cave marsh moor heath waterfall spring island ridge gorge dell
glade copse quarry ford weir stream brook pasture common vineyard
""")
LANDSCAPE_ADJS = _words("deep wide quiet green dark shady rocky muddy hidden ancient long steep narrow sunny windy")
ROOMS = _words("kitchen hall parlour attic cellar porch yard larder pantry scullery bedroom staircase landing study")
GAMES = _words("""
chess draughts dominoes skittles marbles hopscotch cards quoits leapfrog conkers tag hide_and_seek croquet
cricket football rounders bowls charades
""")
BAKED = _words("loaf/loaves roll scone muffin crumpet tart pie pasty doughnut flapjack wafer pancake cake")
WEATHER_NOUNS = {
    "winter": _words("frost snow ice sleet fog hail"),
    "spring": _words("rain drizzle mist wind dew sunshine"),
    "summer": _words("sunshine thunder heat haze lightning dew"),
    "autumn": _words("rain fog mist wind drizzle hail"),
}
TALES = _words("story/stories joke riddle secret tale rhyme")
SUBJECTS = _words("reading writing sums history geography music drawing spelling singing sewing nature_study")
HERBS = _words("mint sage thyme parsley rosemary basil dill chives fennel")
BODY_PARTS = _words("knee elbow ankle wrist thumb finger toe shoulder back nose ear chin")
OUTDOORS = _words("""
along_the_river across_the_meadow through_the_woods up_the_lane over_the_bridge round_the_square
down_to_the_harbour along_the_towpath across_the_common over_the_stile through_the_orchard past_the_chapel
up_the_hill along_the_old_wall round_the_pond down_the_high_street
""")
MOVES = _words("walk stroll wander march skip dance amble trudge hike race dash tiptoe jog hurry")
# things to do, as base-form verb phrases (each verb must be in VERBS)
ACTIVITIES = _words("""
sit_by_the_fire rest_under_a_tree sleep_until_noon hum_a_tune stand_on_the_bridge wait_for_the_post
open_all_the_windows take_a_long_walk sail_a_boat_on_the_lake ride_to_the_next_town laugh_at_a_silly_joke
show_the_children_the_stars bring_in_the_washing hang_up_the_washing hide_from_the_rain
borrow_a_book_from_the_library learn_a_new_song hear_the_bells_of_the_clock_tower see_the_sunrise
give_the_dog_a_bath run_down_to_the_river work_in_the_garden find_a_four-leaf_clover add_up_the_accounts
answer_some_letters ask_about_the_weather hold_a_tea_party drop_in_on_a_neighbour carve_a_wooden_spoon
whittle_a_whistle check_the_traps oil_the_gate lose_track_of_time wait_for_the_rain_to_stop
brew_some_tea growl_at_the_cold howl_with_laughter sit_on_the_harbour_wall sail_down_the_river
stir_the_soup pour_the_tea sharpen_the_knives stack_the_logs stamp_the_letters weigh_the_flour
wear_a_paper_hat win_a_prize_at_the_fair visit_an_old_friend help_with_the_harvest study_the_map
print_some_posters thatch_the_shed_roof shape_a_clay_bowl agree_to_help_a_neighbour explain_the_rules_of_chess
whisper_a_secret shout_across_the_yard smile_at_everyone sigh_with_relief say_goodbye_to_the_neighbours
reply_to_a_letter sleep_in_the_hammock take_the_goat_to_market travel_to_the_coast stand_in_the_rain
sit_on_the_porch carry_the_shopping_home fold_the_sheets lift_the_heavy_sack check_the_beehives
boil_some_eggs peel_the_potatoes slice_the_bread share_a_picnic fix_the_fence borrow_a_ladder
wrap_a_present whittle_a_toy_boat brush_the_pony knit_a_pair_of_socks collect_eggs_from_the_hen_house
watch_the_boats sketch_the_harbour press_some_flowers tell_a_story fly_a_kite jog_round_the_common
amble_through_the_market creep_down_the_stairs treat_the_children_to_sweets rest_by_the_fire
call_on_the_doctor drop_a_line_to_a_cousin hurry_to_catch_the_ferry
""")
LOSABLE = _words("""
key purse wallet comb thimble needle spoon book letter map ribbon button umbrella lantern brush quill pen
pocket_knife/pocket_knives compass whistle marble glove scarf/scarves hat cap kite ball doll
""")
FESTIVALS = _words("""
spring_fair harvest_supper midsummer_dance lantern_walk apple_fair winter_market flower_show boat_race
cheese_fair sheep_show bonfire_supper music_festival regatta pancake_race ploughing_match carnival
""")
